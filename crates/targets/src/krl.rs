//! Placeholder: being written.

/// Placeholder.
pub fn write_krl() {}
