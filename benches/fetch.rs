//! P6 of `benches/compare.sh`: one incremental fetch into berth's bare mirror, timed in-process
//! (as `berth run` does it). Usage: `cargo bench --bench fetch -- URL MIRROR_DIR`; prints the
//! seconds the fetch took.

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [url, cache] = args.as_slice() else {
        eprintln!("usage: fetch URL MIRROR_DIR");
        std::process::exit(2);
    };
    let mirror = berth::git::Mirror::open(std::path::Path::new(cache), url).expect("mirror");
    let started = Instant::now();
    mirror.fetch(&["main"], None).expect("fetch");
    let elapsed = started.elapsed();
    mirror.resolve("main").expect("main");
    println!("{:.3}", elapsed.as_secs_f64());
}
