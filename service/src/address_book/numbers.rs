//! The guests' host numbers, indexed both ways: by guest, and the numbers given (so finding a
//! free one does not take a pass over every guest).

use std::collections::BTreeMap;

/// Host number → how many guests hold it (one, unless a state file said otherwise).
pub type Given = BTreeMap<u32, usize>;

#[derive(Debug, Default)]
pub struct Numbers {
    by_guest: BTreeMap<String, u32>,
    given: Given,
}

impl Numbers {
    pub fn get(&self, guest: &str) -> Option<u32> {
        self.by_guest.get(guest).copied()
    }

    pub fn insert(&mut self, guest: &str, number: u32) {
        self.remove(guest);
        self.by_guest.insert(guest.to_owned(), number);
        *self.given.entry(number).or_default() += 1;
    }

    pub fn remove(&mut self, guest: &str) {
        if let Some(number) = self.by_guest.remove(guest) {
            self.ungive(number);
        }
    }

    /// Keeps the guests for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let mut dropped = Vec::new();
        self.by_guest.retain(|guest, number| {
            let kept = keep(guest);
            if !kept {
                dropped.push(*number);
            }
            kept
        });
        for number in dropped {
            self.ungive(number);
        }
    }

    pub fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_guest.values().copied()
    }

    pub fn given(&self) -> &Given {
        &self.given
    }

    fn ungive(&mut self, number: u32) {
        if let Some(count) = self.given.get_mut(&number) {
            *count -= 1;
            if *count == 0 {
                self.given.remove(&number);
            }
        }
    }
}

impl FromIterator<(String, u32)> for Numbers {
    fn from_iter<I: IntoIterator<Item = (String, u32)>>(pairs: I) -> Self {
        let mut numbers = Numbers::default();
        for (guest, number) in pairs {
            numbers.insert(&guest, number);
        }
        numbers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_indexes_follow_every_change() {
        let mut numbers: Numbers = [("a".to_owned(), 200), ("b".to_owned(), 201)].into_iter().collect();
        numbers.insert("a", 202);
        numbers.insert("c", 201);
        assert_eq!(numbers.given(), &Given::from([(201, 2), (202, 1)]));
        numbers.remove("b");
        numbers.remove("nobody");
        assert_eq!(numbers.given(), &Given::from([(201, 1), (202, 1)]));
        numbers.retain(|guest| guest != "c");
        assert_eq!((numbers.get("a"), numbers.get("c")), (Some(202), None));
        assert_eq!(numbers.given(), &Given::from([(202, 1)]));
    }
}
