//! 1:N palm identification: a candidate index (sublinear retrieval, in memory, compact per
//! palm) followed by geometric verification of a shortlist with the pure-Rust matcher, whose
//! full templates are read from the store (decrypted) rather than held in memory.
//!
//! Never links OpenCV. Never holds decrypted templates longer than one identification.

pub mod index;

use palmline_shared::palm::Template;

/// A palm is identified by the shopper account it is enrolled to.
pub type PalmId = i64;

/// Candidate retrieval. Implementations keep a compact signature per palm in memory and
/// must return the right palm among the first `k` candidates as often as exhaustive search
/// would find it.
pub trait CandidateIndex: Send + Sync {
    /// Adds (or replaces) a palm from its enrollment templates.
    fn insert(&mut self, palm: PalmId, templates: &[Template]);
    /// Removes a palm; unknown ids are ignored.
    fn remove(&mut self, palm: PalmId);
    /// Up to `k` candidate palms for the probe, most promising first.
    fn candidates(&self, probe: &Template, k: usize) -> Vec<PalmId>;
    /// Up to `k` candidates for a probe whose ROI may be turned relative to the enrolled
    /// ones by more than [`candidates`](Self::candidates) tolerates (the kiosk read the
    /// hand's direction wrong): the second stage of an identification that found no
    /// acceptable palm among the first candidates. None by default.
    fn candidates_turned(&self, _probe: &Template, _k: usize) -> Vec<PalmId> {
        Vec::new()
    }
    /// Number of palms indexed.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Heap bytes held by the index (for the memory-per-palm figure).
    fn memory_bytes(&self) -> usize;
}

/// The index the server uses.
pub fn default_index() -> Box<dyn CandidateIndex> {
    Box::new(index::HashIndex::default())
}

/// The reference: every enrolled palm is a candidate (exhaustive search). Used by tests
/// and as the comparison point of the identification benchmark.
#[derive(Debug, Default, Clone)]
pub struct ExhaustiveIndex {
    palms: std::collections::BTreeSet<PalmId>,
}

impl CandidateIndex for ExhaustiveIndex {
    fn insert(&mut self, palm: PalmId, _: &[Template]) {
        self.palms.insert(palm);
    }
    fn remove(&mut self, palm: PalmId) {
        self.palms.remove(&palm);
    }
    fn candidates(&self, _: &Template, k: usize) -> Vec<PalmId> {
        self.palms.iter().copied().take(k).collect()
    }
    fn len(&self) -> usize {
        self.palms.len()
    }
    fn memory_bytes(&self) -> usize {
        self.palms.len() * std::mem::size_of::<PalmId>() * 2
    }
}
