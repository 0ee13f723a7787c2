use std::process::ExitCode;

fn main() -> ExitCode {
    llama_wgpu::cli::main()
}
