use crate::gpu::list_adapters;

#[derive(clap::Args)]
pub struct DevicesArgs {
    /// Only adapters of this backend (vulkan, metal, dx12, gl).
    #[arg(long)]
    pub backend: Option<String>,
    /// A JSON array on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
}

fn mib(b: u64) -> String {
    format!("{} MiB", b / (1024 * 1024))
}

pub fn run(args: &DevicesArgs) -> anyhow::Result<()> {
    let list = list_adapters(args.backend.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        anyhow::bail!(
            "no GPU adapter found: install your GPU's Vulkan, Metal or DX12 driver \
             (on Linux without a GPU, Mesa's lavapipe works: apt-get install mesa-vulkan-drivers)"
        );
    }
    for a in &list {
        println!(
            "[{}] {} ({}, {})",
            a.index, a.name, a.backend, a.device_type
        );
        println!("    driver:            {} {}", a.driver, a.driver_info);
        println!(
            "    storage binding:   {}   buffer: {}",
            mib(a.max_storage_binding),
            mib(a.max_buffer_size)
        );
        println!(
            "    workgroup:         {} invocations, x <= {}, {} KiB shared",
            a.max_invocations_per_workgroup,
            a.max_workgroup_size_x,
            a.max_workgroup_storage / 1024
        );
        let yes = |b: bool| if b { "yes" } else { "no" };
        let sg = if a.subgroups {
            format!("yes ({}..{})", a.subgroup_sizes.0, a.subgroup_sizes.1)
        } else {
            "no".into()
        };
        println!(
            "    shader-f16: {}   subgroups: {}   timestamp queries: {}",
            yes(a.shader_f16),
            sg,
            yes(a.timestamp_queries)
        );
    }
    Ok(())
}
