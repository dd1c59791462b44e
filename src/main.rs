//! The `dr` command. All behaviour lives in the library; this only runs it.

/// jemalloc, configured in `.cargo/config.toml` to purge freed memory in the
/// background: after a tick over a thousand volumes, glibc's malloc kept
/// ~80 MB resident for a ~1 MB live set.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    dr::cli::main()
}
