//! Class names.

use std::path::Path;

/// Class names in output order. Each line of a labels file may hold several
/// comma-separated names (`fox squirrel, eastern fox squirrel, Sciurus niger`);
/// the first is the display label.
#[derive(Clone, Debug)]
pub struct Labels {
    names: Vec<String>,
}

impl Labels {
    /// Parses a labels file's text: one class per non-empty line.
    pub fn parse(text: &str) -> Self {
        let names = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').next().unwrap_or(l).trim().to_string())
            .collect();
        Labels { names }
    }

    /// Reads a labels file.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    /// Display label of class `index`, or `class N` for an index past the list.
    pub fn get(&self, index: usize) -> std::borrow::Cow<'_, str> {
        match self.names.get(index) {
            Some(n) => std::borrow::Cow::Borrowed(n),
            None => std::borrow::Cow::Owned(format!("class {index}")),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_name_is_the_label() {
        let l = Labels::parse("tench, Tinca tinca\n\nfox squirrel, eastern fox squirrel\nplain\n");
        assert_eq!(l.len(), 3);
        assert_eq!(l.get(0), "tench");
        assert_eq!(l.get(1), "fox squirrel");
        assert_eq!(l.get(2), "plain");
        assert_eq!(l.get(7), "class 7");
    }
}
