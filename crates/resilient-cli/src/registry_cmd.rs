//! `resilient check CONFIG` and `resilient patterns`: the registry from the command line.

use std::process::ExitCode;

use resilient::registry::Registry;

/// `resilient check CONFIG`: loads a configuration file into a fresh registry (validating
/// all of it) and prints what it defines: each pipeline's stages, and the named breakers,
/// limiters and bulkheads.
pub fn check(args: &[String]) -> ExitCode {
    let mut file = None;
    for a in args {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{}", crate::USAGE);
                return ExitCode::SUCCESS;
            }
            _ if file.is_some() => {
                eprintln!("resilient check: unexpected argument '{a}'");
                return ExitCode::from(2);
            }
            _ => file = Some(a.clone()),
        }
    }
    let Some(file) = file else {
        eprintln!("resilient check: which file? usage: resilient check CONFIG.toml");
        return ExitCode::from(2);
    };
    let registry = Registry::new();
    if let Err(e) = registry.load_toml_file(&file) {
        eprintln!("resilient check: {e}");
        return ExitCode::from(1);
    }
    println!("{file}: ok");
    for name in registry.pipeline_names() {
        let Ok(p) = registry.any_pipeline(&name) else {
            continue;
        };
        println!("pipeline {name}");
        if p.stages().is_empty() {
            println!("  (no stages)");
        }
        for (i, stage) in p.stages().iter().enumerate() {
            println!("  {}. {stage}", i + 1);
        }
    }
    for (kind, names) in [
        ("breaker", registry.breaker_names()),
        ("limiter", registry.limiter_names()),
        ("bulkhead", registry.bulkhead_names()),
    ] {
        for name in names {
            println!("{kind} {name}");
        }
    }
    ExitCode::SUCCESS
}

/// `resilient patterns`: every pattern registered in this program (the built-in ones and
/// those of the extension crates linked into it): name, crate, parameters, description.
pub fn patterns(args: &[String]) -> ExitCode {
    if let Some(a) = args.first() {
        if a == "-h" || a == "--help" {
            print!("{}", crate::USAGE);
            return ExitCode::SUCCESS;
        }
        eprintln!("resilient patterns: unexpected argument '{a}'");
        return ExitCode::from(2);
    }
    let all = match resilient::registry::patterns() {
        Ok(all) => all,
        Err(e) => {
            eprintln!("resilient patterns: {e}");
            return ExitCode::from(1);
        }
    };
    for (i, p) in all.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{} (crate {})", p.name, p.crate_name);
        println!("  {}", p.description);
        let width = p
            .params
            .iter()
            .map(|q| q.name.len() + q.default.len() + 3)
            .max();
        for q in p.params {
            let spelled = format!("{} = {}", q.name, q.default);
            println!(
                "    {spelled:<w$}  {}",
                q.description,
                w = width.unwrap_or(0)
            );
        }
    }
    ExitCode::SUCCESS
}
