//! Every shader variant parses, validates, and translates to SPIR-V (Vulkan),
//! MSL (Metal), HLSL (DX12) and GLSL (GL) with naga, so a backend we cannot
//! run here does not find the breakage first.

use llama_wgpu::gpu::kernels::Kernel;

fn validate(k: Kernel, subgroups: bool) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = k.source(subgroups);
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
        panic!(
            "{k:?} (subgroups {subgroups}) does not parse:\n{}",
            e.emit_to_string(&src)
        )
    });
    // unpack2x16float/pack2x16float: a downlevel capability that wgpu grants on
    // Vulkan, Metal, DX12 and GL ES 3.1+, i.e. everywhere the engine runs.
    let mut caps = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    if subgroups {
        caps |= naga::valid::Capabilities::SUBGROUP;
    }
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .unwrap_or_else(|e| {
            panic!(
                "{k:?} (subgroups {subgroups}) does not validate:\n{}",
                e.emit_to_string(&src)
            )
        });
    (module, info)
}

#[test]
fn every_shader_translates_to_every_backend_language() {
    let variants = Kernel::all_variants();
    assert!(
        variants.len() > 60,
        "expected every kernel x type x reduction variant"
    );
    for (k, subgroups) in variants {
        let (module, info) = validate(k, subgroups);
        let name = format!("{k:?} (subgroups {subgroups})");

        naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
            .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));

        let msl_opts = naga::back::msl::Options {
            lang_version: (2, 4),
            ..Default::default()
        };
        naga::back::msl::write_string(
            &module,
            &info,
            &msl_opts,
            &naga::back::msl::PipelineOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: MSL: {e}"));

        let mut hlsl = String::new();
        let hlsl_opts = naga::back::hlsl::Options {
            shader_model: naga::back::hlsl::ShaderModel::V6_0,
            ..Default::default()
        };
        naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_opts, &Default::default())
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{name}: HLSL: {e}"));

        // GL has no subgroup path here: those variants are only built when the
        // adapter reports SUBGROUP, which the GL backend does not.
        if !subgroups {
            for ep in module.entry_points.iter() {
                let mut glsl = String::new();
                let opts = naga::back::glsl::Options {
                    version: naga::back::glsl::Version::new_gles(310),
                    ..Default::default()
                };
                let pipeline = naga::back::glsl::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: ep.name.clone(),
                    multiview: None,
                };
                naga::back::glsl::Writer::new(
                    &mut glsl,
                    &module,
                    &info,
                    &opts,
                    &pipeline,
                    Default::default(),
                )
                .and_then(|mut w| w.write().map(|_| ()))
                .unwrap_or_else(|e| panic!("{name}: GLSL ({}): {e}", ep.name));
            }
        }
    }
}
