//! The operation-id slab both engines keep: each operation in flight gets
//! the index of a free slot as its [`OpId`], reused once the operation is
//! reported, so ids stay small (io_uring carries them in `user_data`).

use super::OpId;

/// Slots of in-flight operations, indexed by [`OpId`].
pub(crate) struct OpSlab<T> {
    slots: Vec<Option<T>>,
    free: Vec<OpId>,
    live: usize,
}

impl<T> OpSlab<T> {
    pub(crate) const fn new() -> OpSlab<T> {
        OpSlab {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    /// Stores `value` in a free slot and returns its id.
    pub(crate) fn insert(&mut self, value: T) -> OpId {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as OpId
            }
        };
        self.slots[id as usize] = Some(value);
        self.live += 1;
        id
    }

    /// Takes the operation `id` out (None if no such operation is live).
    pub(crate) fn remove(&mut self, id: OpId) -> Option<T> {
        let v = self.slots.get_mut(id as usize)?.take()?;
        self.free.push(id);
        self.live -= 1;
        Some(v)
    }

    pub(crate) fn get(&self, id: OpId) -> Option<&T> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: OpId) -> Option<&mut T> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// How many operations are live.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The ids of the live operations for which `pred` holds.
    pub(crate) fn ids_where(&self, mut pred: impl FnMut(&T) -> bool) -> Vec<OpId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(&mut pred))
            .map(|(i, _)| i as OpId)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reused_and_counted() {
        let mut s = OpSlab::new();
        let a = s.insert('a');
        let b = s.insert('b');
        assert_ne!(a, b);
        assert_eq!(s.len(), 2);
        assert_eq!(s.remove(a), Some('a'));
        assert_eq!(s.remove(a), None, "a removed operation is gone");
        assert_eq!(s.len(), 1);
        let c = s.insert('c');
        assert_eq!(c, a, "a freed slot is reused");
        assert_eq!(s.get(b), Some(&'b'));
        assert_eq!(s.ids_where(|&v| v == 'c'), vec![c]);
        assert_eq!(s.get(99), None);
    }
}
