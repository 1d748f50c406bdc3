//! The hold-back automata of streamed text: from which positions a finding may still begin.
//!
//! Each enforcing text check has a [`Shape`]: every pattern it can match, as one anchored lazy
//! DFA. A position of the held text is alive while the automaton started there is neither dead
//! nor final; the earliest alive position is where released text must stop.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::util::start;
use regex_automata::Anchored;

/// Cache of the lazy automaton per stream and shape.
const CACHE_BYTES: usize = 256 * 1024;

/// The hold-back automaton: every pattern of a check, anchored.
#[derive(Debug, Clone)]
pub struct Shape {
    dfa: DFA,
}

impl Shape {
    pub fn new(patterns: &[String]) -> Result<Shape, String> {
        let dfa = DFA::builder()
            .syntax(crate::guardrails::scan::syntax_config())
            .thompson(regex_automata::nfa::thompson::Config::new().utf8(false).nfa_size_limit(Some(8 << 20)))
            .configure(DFA::config().cache_capacity(CACHE_BYTES).skip_cache_capacity_check(true))
            .build_many(patterns)
            .map_err(|e| e.to_string())?;
        Ok(Shape { dfa })
    }

    fn cache(&self) -> Cache {
        self.dfa.create_cache()
    }
}

/// Positions of one text stream from which one shape is still alive.
#[derive(Debug, Default, Clone)]
struct Alive {
    clear_count: usize,
    /// (absolute start, state after consuming everything up to `advanced_to`)
    states: Vec<(u64, LazyStateID)>,
    advanced_to: u64,
}

enum Step {
    Alive(LazyStateID),
    Dead,
    /// The cache was cleared: every stored state is invalid.
    Cleared,
}

/// A lazy automaton's cache for one stream, and which of its states are known to be final
/// (nothing longer can match from them).
pub(crate) struct ShapeCache {
    cache: Cache,
    finals: std::collections::HashMap<LazyStateID, bool>,
    epoch: usize,
}

impl ShapeCache {
    pub(super) fn new(shape: &Shape) -> ShapeCache {
        ShapeCache { cache: shape.cache(), finals: std::collections::HashMap::new(), epoch: 0 }
    }

    fn clear_count(&self) -> usize {
        self.cache.clear_count()
    }
}

fn advance(dfa: &DFA, shape_cache: &mut ShapeCache, mut sid: LazyStateID, bytes: &[u8]) -> Step {
    let cache = &mut shape_cache.cache;
    let clears = cache.clear_count();
    for &b in bytes {
        sid = match dfa.next_state(cache, sid, b) {
            Ok(s) => s,
            Err(_) => return Step::Alive(sid),
        };
        if cache.clear_count() != clears {
            return Step::Cleared;
        }
        if sid.is_dead() {
            return Step::Dead;
        }
    }
    match is_final(dfa, shape_cache, sid) {
        None => Step::Cleared,
        Some(true) => Step::Dead,
        Some(false) => Step::Alive(sid),
    }
}

/// Whether no continuation can make a longer match from `sid`: every byte leads to the dead
/// state, or to a (delayed) match state from which every byte leads to the dead state. `None`
/// when the cache was cleared meanwhile.
fn is_final(dfa: &DFA, shape_cache: &mut ShapeCache, sid: LazyStateID) -> Option<bool> {
    if shape_cache.epoch != shape_cache.cache.clear_count() {
        shape_cache.finals.clear();
        shape_cache.epoch = shape_cache.cache.clear_count();
    }
    if let Some(known) = shape_cache.finals.get(&sid) {
        return Some(*known);
    }
    let clears = shape_cache.cache.clear_count();
    let cache = &mut shape_cache.cache;
    let dead_after = |cache: &mut Cache, from: LazyStateID| -> Option<bool> {
        for unit in dfa.byte_classes().representatives(..) {
            let Some(b) = unit.as_u8() else { continue };
            let next = dfa.next_state(cache, from, b).ok()?;
            if cache.clear_count() != clears {
                return None;
            }
            if !next.is_dead() {
                return Some(false);
            }
        }
        Some(true)
    };
    let mut result = true;
    for unit in dfa.byte_classes().representatives(..) {
        let Some(b) = unit.as_u8() else { continue };
        let next = dfa.next_state(cache, sid, b).ok()?;
        if cache.clear_count() != clears {
            return None;
        }
        if next.is_dead() {
            continue;
        }
        if !next.is_match() || !dead_after(cache, next)? {
            result = false;
            break;
        }
    }
    if shape_cache.cache.clear_count() != clears {
        return None;
    }
    shape_cache.finals.insert(sid, result);
    Some(result)
}

/// The alive positions of one text stream, per active shape.
#[derive(Debug, Default, Clone)]
pub(super) struct Holds {
    alive: Vec<Alive>,
}

impl Holds {
    /// The earliest position of `hay[from..]` where some shape is alive (`len` if none).
    /// `base`: the offset in the whole text of `hay[from]`; `active`: the shapes (indexes into
    /// `shapes` and `caches`) that hold text back.
    pub(super) fn first_alive(
        &mut self,
        active: &[usize],
        shapes: &[Shape],
        caches: &mut [ShapeCache],
        hay: &[u8],
        from: usize,
        base: u64,
    ) -> usize {
        if self.alive.len() < active.len() {
            self.alive.resize(active.len(), Alive { advanced_to: base, ..Alive::default() });
        }
        let len = hay.len();
        let to_index = |abs: u64, base: u64| from + (abs.saturating_sub(base)) as usize;
        let mut earliest = len;
        for (slot, &shape_index) in active.iter().enumerate() {
            let (Some(shape), Some(cache), Some(alive)) =
                (shapes.get(shape_index), caches.get_mut(shape_index), self.alive.get_mut(slot))
            else {
                continue;
            };
            let mut attempts = 0;
            loop {
                attempts += 1;
                if attempts > 3 {
                    // The automaton keeps outgrowing its cache: hold everything (the cap still applies).
                    return from;
                }
                if cache.clear_count() != alive.clear_count {
                    alive.states.clear();
                    alive.advanced_to = base;
                    alive.clear_count = cache.clear_count();
                }
                let new_from = to_index(alive.advanced_to, base).min(len);
                let new_bytes = hay.get(new_from..).unwrap_or_default();
                let mut cleared = false;
                let mut kept = Vec::with_capacity(alive.states.len());
                for &(start, sid) in &alive.states {
                    match advance(&shape.dfa, cache, sid, new_bytes) {
                        Step::Alive(s) => kept.push((start, s)),
                        Step::Dead => {}
                        Step::Cleared => {
                            cleared = true;
                            break;
                        }
                    }
                }
                if !cleared {
                    for p in new_from..len {
                        let look_behind = p.checked_sub(1).and_then(|i| hay.get(i)).copied();
                        let config = start::Config::new().anchored(Anchored::Yes).look_behind(look_behind);
                        let clears = cache.clear_count();
                        let Ok(sid) = shape.dfa.start_state(&mut cache.cache, &config) else {
                            // Cannot start here (never happens in ASCII mode): hold from here.
                            return p;
                        };
                        if cache.clear_count() != clears {
                            cleared = true;
                            break;
                        }
                        match advance(&shape.dfa, cache, sid, hay.get(p..).unwrap_or_default()) {
                            Step::Alive(s) => kept.push((base + (p - from) as u64, s)),
                            Step::Dead => {}
                            Step::Cleared => {
                                cleared = true;
                                break;
                            }
                        }
                    }
                }
                if cleared {
                    alive.clear_count = usize::MAX; // force a restart from scratch
                    continue;
                }
                alive.states = kept;
                alive.advanced_to = base + (len - from) as u64;
                alive.clear_count = cache.clear_count();
                break;
            }
            if let Some(&(start, _)) = alive.states.iter().min_by_key(|(s, _)| *s) {
                earliest = earliest.min(to_index(start, base));
            }
        }
        earliest.max(from)
    }

    /// Forgets positions before `base`: that text was released.
    pub(super) fn forget_before(&mut self, base: u64) {
        for alive in &mut self.alive {
            alive.states.retain(|(start, _)| *start >= base);
            alive.advanced_to = alive.advanced_to.max(base);
        }
    }
}
