//! How many bytes a host function may gather for one call of a component: the
//! component's memory limit. A value, a listing or an object read whole is
//! charged against it before (or, where the backend gives no size first, as) the
//! host holds it, so a component limited to 64 MiB can make the host buffer at
//! most 64 MiB per call, and gets an error instead of a trap when it asks for more.

use std::sync::atomic::{AtomicU64, Ordering};

use weft_runtime::limits::ByteSize;

pub struct Budget {
    limit: u64,
    left: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget { limit, left: AtomicU64::new(limit) }
    }

    /// Takes `bytes` from what is left, or says why not (naming `what`).
    pub fn charge(&self, bytes: u64, what: &str) -> Result<(), String> {
        let taken = self.left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(bytes));
        taken.map(drop).map_err(|_| {
            format!(
                "{what} ({}) is more than the caller may receive in one call: its memory limit is {}",
                ByteSize(bytes),
                ByteSize(self.limit)
            )
        })
    }

    /// The most bytes one read may still return (what is left, plus one, so that a
    /// reader of unknown size can tell "exactly what was left" from "more").
    pub fn read_cap(&self) -> u64 {
        self.left.load(Ordering::Relaxed).saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_the_limit_and_no_further() {
        let budget = Budget::new(100);
        assert!(budget.charge(60, "a value").is_ok());
        assert!(budget.charge(40, "a value").is_ok());
        let refused = budget.charge(1, "a value").unwrap_err();
        assert!(refused.contains("a value (1B)") && refused.contains("memory limit is 100B"), "{refused}");
        assert_eq!(budget.read_cap(), 1);
    }

    #[test]
    fn a_charge_larger_than_the_whole_limit_takes_nothing() {
        let budget = Budget::new(10);
        assert!(budget.charge(u64::MAX, "a listing").is_err());
        assert!(budget.charge(10, "a value").is_ok());
    }
}
