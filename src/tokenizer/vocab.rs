//! The two OpenAI vocabularies, embedded in the module (see `build.rs` for the format), and the
//! byte-string → rank table built from them once per VM.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

/// Rank of every token by its bytes. In tiktoken's vocabularies a token's rank is also its merge
/// priority.
pub struct Ranks {
    /// Keys borrow the embedded table, so building the map copies no token bytes.
    map: HashMap<&'static [u8], u32, BuildHasherDefault<FxHasher>>,
    /// Two-byte tokens by `first << 8 | second` (u32::MAX: none). Every merge starts with byte
    /// pairs; a direct table answers them without hashing (256 KiB; a third fewer hash lookups).
    pairs: Vec<u32>,
}

impl Ranks {
    pub fn get(&self, bytes: &[u8]) -> Option<u32> {
        match *bytes {
            [first, second] => self.pairs.get(usize::from(first) << 8 | usize::from(second)).copied(),
            _ => self.map.get(bytes).copied(),
        }
        .filter(|&rank| rank != u32::MAX)
    }
}

pub static O200K_BASE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.vocab"));
pub static CL100K_BASE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_base.vocab"));

/// Builds the rank table. `None` only if the embedded table is malformed, which `build.rs` rules
/// out; callers still degrade instead of panicking.
pub fn ranks(table: &'static [u8]) -> Option<Ranks> {
    let (count, rest) = table.split_at_checked(4)?;
    let count = usize::try_from(u32::from_le_bytes(count.try_into().ok()?)).ok()?;
    let (lengths, mut bytes) = rest.split_at_checked(count)?;
    let mut map = HashMap::with_capacity_and_hasher(count, BuildHasherDefault::default());
    let mut pairs = vec![u32::MAX; 1 << 16];
    for (rank, &len) in lengths.iter().enumerate() {
        let (token, tail) = bytes.split_at_checked(usize::from(len))?;
        let rank = u32::try_from(rank).ok()?;
        if let [first, second] = *token {
            *pairs.get_mut(usize::from(first) << 8 | usize::from(second))? = rank;
        }
        map.insert(token, rank);
        bytes = tail;
    }
    (bytes.is_empty() && map.len() == count).then_some(Ranks { map, pairs })
}
