//! The two OpenAI vocabularies, embedded in the module (see `build.rs` for the format), and the
//! byte-string → rank table built from them once per VM.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

/// Rank of every token by its bytes. Keys borrow the embedded table, so building the map copies
/// no token bytes. In tiktoken's vocabularies a token's rank is also its merge priority.
pub type Ranks = HashMap<&'static [u8], u32, BuildHasherDefault<FxHasher>>;

pub static O200K_BASE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.vocab"));
pub static CL100K_BASE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_base.vocab"));

/// Builds the rank table. `None` only if the embedded table is malformed, which `build.rs` rules
/// out; callers still degrade instead of panicking.
pub fn ranks(table: &'static [u8]) -> Option<Ranks> {
    let (count, rest) = table.split_at_checked(4)?;
    let count = usize::try_from(u32::from_le_bytes(count.try_into().ok()?)).ok()?;
    let (lengths, mut bytes) = rest.split_at_checked(count)?;
    let mut ranks = Ranks::with_capacity_and_hasher(count, BuildHasherDefault::default());
    for (rank, &len) in lengths.iter().enumerate() {
        let (token, tail) = bytes.split_at_checked(usize::from(len))?;
        ranks.insert(token, u32::try_from(rank).ok()?);
        bytes = tail;
    }
    (bytes.is_empty() && ranks.len() == count).then_some(ranks)
}
