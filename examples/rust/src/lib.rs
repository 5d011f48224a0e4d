//! A tiny crate for the Solstice CI Rust example.

/// Adds two numbers, saturating at `u64::MAX` instead of overflowing.
///
/// ```
/// assert_eq!(ferrite::add(2, 3), 5);
/// assert_eq!(ferrite::add(u64::MAX, 1), u64::MAX);
/// ```
pub fn add(a: u64, b: u64) -> u64 {
    a.saturating_add(b)
}

#[cfg(test)]
mod tests {
    use super::add;

    #[test]
    fn adds() {
        assert_eq!(add(40, 2), 42);
    }

    #[test]
    fn saturates() {
        assert_eq!(add(u64::MAX, u64::MAX), u64::MAX);
    }
}
