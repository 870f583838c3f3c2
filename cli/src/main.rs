//! vmnetctl: see the library (`vmnetctl::command`) and `vmnetctl --help`.

fn main() -> std::process::ExitCode {
    vmnetctl::main()
}
