//! `kodama-sim`: run the simulated cluster as a standalone process (benchmarks, demo).
fn main() {}
