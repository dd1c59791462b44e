//! Longhorn manager API emulator (work in progress).
