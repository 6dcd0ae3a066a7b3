//! Placeholder: fresh MariaDB databases for tests (being written).
