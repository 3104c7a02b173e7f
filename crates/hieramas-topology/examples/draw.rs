//! Prints an SVG of a seeded random topology over a benchmark's roles.
//!
//! `cargo run -p hieramas-topology --example draw -- mmlu 7 > t.svg`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let benchmark = args.next().unwrap_or_else(|| "mmlu".into());
    let seed: u64 = args.next().map_or(Ok(0), |s| s.parse())?;
    let roles = hieramas_topology::roleset::RoleSet::builtin(&benchmark)?;
    let t = hieramas_topology::generate::random_dag(&roles.names(), 0.3, 0.7, seed)?;
    let title = format!(
        "{benchmark} · random DAG (seed {seed}) · density {:.2}",
        t.density()
    );
    print!("{}", t.to_svg(&title));
    Ok(())
}
