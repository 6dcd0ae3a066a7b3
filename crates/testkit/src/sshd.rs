//! Placeholder: a test-started sshd (being written).
