//! The binary: everything it does is the face's (`face::main`); this file only starts it.

fn main() -> std::process::ExitCode {
    mr_storage_initializer::main()
}
