//! Runs the ByteNite simulator by hand: `cargo run --example bytenite_sim -- [LINES]`.
//! Prints the endpoint and API key to put in a ferry `bytenite` source, then serves
//! a running job (`job-demo`: a partitioner, two tasks with `LINES` lines each,
//! default 1000, and a new line every second on each) until Ctrl-C.

#[path = "../tests/support/bytenite_sim.rs"]
mod bytenite_sim;

use std::time::Duration;

use bytenite_sim::{ByteniteSim, LogLine, Origin, SimConfig, now_nanos};

#[tokio::main]
async fn main() {
    let lines: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let sim = ByteniteSim::start(SimConfig::default()).await;
    sim.add_job("job-demo", "img-gen-diffusers@v1");
    sim.start_job("job-demo");
    let start = now_nanos() - lines as i64 * 1_000_000;
    sim.append(
        "job-demo",
        Origin::Partitioner,
        [LogLine::new(
            "split input into 2 chunks",
            start,
            "INFO",
            "partitioner",
        )],
    );
    for task in ["task-0", "task-1"] {
        sim.append(
            "job-demo",
            Origin::Task(task.into()),
            (0..lines).map(|n| {
                let text = format!("{task} processing item {n}");
                LogLine::new(text, start + n as i64 * 1_000_000, "INFO", "app")
            }),
        );
    }
    println!("endpoint = \"{}\"", sim.url());
    println!("api_key  = \"{}\"", sim.config().api_key);
    let mut n = lines;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                for task in ["task-0", "task-1"] {
                    let text = format!("{task} processing item {n}");
                    let level = if n % 10 == 0 { "WARN" } else { "INFO" };
                    sim.append("job-demo", Origin::Task(task.into()), [LogLine::new(text, now_nanos(), level, "app")]);
                }
                n += 1;
            }
        }
    }
}
