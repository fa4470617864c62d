//! Runs the DigitalOcean App Platform simulator by hand:
//! `cargo run --example digitalocean_sim -- [LINES]`. Prints the endpoint, token
//! and app id to put in a ferry `digitalocean` source, then serves an app whose
//! active deployment `d1` has BUILD and DEPLOY archives and `LINES` RUN lines
//! (default 1000) from `web` and `worker`, a new RUN line every second, and a
//! redeploy to `d2` every five minutes, until Ctrl-C.

#[path = "../tests/support/digitalocean_sim.rs"]
mod digitalocean_sim;

use std::time::Duration;

use digitalocean_sim::{DigitalOceanSim, Phase, SimConfig, message};

#[tokio::main]
async fn main() {
    let lines: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let sim = DigitalOceanSim::start(SimConfig::default()).await;
    let mut deployment = 1;
    let id = |n: usize| format!("d{n}");
    sim.add_deployment(&id(deployment), Phase::Active);
    sim.append(
        &id(1),
        "BUILD",
        "web",
        (0..20).map(|n| message("build", n, 60)),
    );
    sim.append(
        &id(1),
        "DEPLOY",
        "web",
        (0..5).map(|n| message("deploy", n, 60)),
    );
    sim.append(
        &id(1),
        "RUN",
        "web",
        (0..lines).map(|n| message("web", n, 200)),
    );
    let config = sim.config();
    println!("endpoint = \"{}\"", sim.url());
    println!("token    = \"{}\"", config.token);
    println!("app_id   = \"{}\"", config.app_id);
    let mut n = lines;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                n += 1;
                if n % 300 == 0 {
                    deployment += 1;
                    sim.redeploy(&id(deployment));
                    println!("redeployed: {} is active", id(deployment));
                }
                sim.append(&id(deployment), "RUN", "web", [message("web", n, 120)]);
                sim.append(&id(deployment), "RUN", "worker", [message("worker", n, 80)]);
            }
        }
    }
}
