//! The 61-byte v2 record batch header: parsing, validation and patching.
