//! The InferenceService controller binary: everything it does is `controller::main`'s; this
//! file only starts it.

fn main() -> std::process::ExitCode {
    mr_storage_initializer::controller_main()
}
