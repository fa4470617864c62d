use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::checkpoint::{CheckpointStore, CursorUpdate, Cursors, spawn_tracker};
use crate::telemetry::Health;
use crate::transforms::TransformConfig;

fn config(options: &str) -> MultilineConfig {
    let value: toml::Value = toml::from_str(options).unwrap();
    match TransformConfig::deserialize_type("multiline", value) {
        Some(Ok(TransformConfig::Multiline(config))) => {
            config.validate().unwrap();
            config
        }
        other => panic!("not a multiline config: {other:?}"),
    }
}

fn multiline(options: &str) -> Multiline {
    Multiline::new("test", &config(options))
}

/// A line of container `instance`'s `stream`, as a provider source sends it.
fn line(instance: &str, stream: &str, text: &str) -> Event {
    let mut event = Event::new("src".into(), "ionet".into(), text.into(), 0);
    event.origin.instance = Some(instance.into());
    event.origin.deployment = Some("d-1".into());
    event.stream = Some(stream.into());
    event
}

fn batch(events: Vec<Event>) -> Batch {
    Batch {
        events,
        delivery: Delivery::detached(),
    }
}

/// Runs `batches` through `transform` (all at one instant), then flushes it.
fn run_all(transform: &mut Multiline, batches: Vec<Vec<Event>>) -> Vec<Event> {
    let now = Instant::now();
    let mut out = Vec::new();
    for events in batches {
        out.extend(
            transform
                .process(batch(events), now)
                .map(|b| b.events)
                .into_iter()
                .flatten(),
        );
    }
    out.extend(transform.flush().map(|b| b.events).into_iter().flatten());
    out
}

type StreamId = (String, String);

fn stream_of(event: &Event) -> StreamId {
    (
        event.origin.instance.clone().unwrap_or_default(),
        event.stream.clone().unwrap_or_default(),
    )
}

fn by_stream(events: &[Event]) -> BTreeMap<StreamId, Vec<String>> {
    let mut out: BTreeMap<StreamId, Vec<String>> = BTreeMap::new();
    for event in events {
        out.entry(stream_of(event))
            .or_default()
            .push(event.message.clone());
    }
    out
}

// Traces written from each runtime's real output format.

const JAVA: &[&str] = &[
    "Exception in thread \"main\" java.lang.IllegalStateException: Order 42 has no items
\tat com.example.shop.OrderService.checkout(OrderService.java:87)
\tat com.example.shop.OrderController.post(OrderController.java:41)
\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)
\tat java.base/java.lang.reflect.Method.invoke(Method.java:580)
Caused by: java.lang.NullPointerException: Cannot invoke \"java.util.List.size()\" because \"items\" is null
\tat com.example.shop.Cart.count(Cart.java:19)
\t... 3 more",
    "java.util.concurrent.ExecutionException: java.net.SocketTimeoutException: Read timed out
\tat java.base/java.util.concurrent.FutureTask.report(FutureTask.java:122)
\tat java.base/java.util.concurrent.FutureTask.get(FutureTask.java:191)
\tat com.example.billing.InvoiceJob.run(InvoiceJob.java:55)
\tSuppressed: java.io.IOException: close failed
\t\tat com.example.billing.HttpClient.close(HttpClient.java:77)
\t\t... 2 more
Caused by: java.net.SocketTimeoutException: Read timed out
\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:278)
\t... 12 common frames omitted",
];

const PYTHON: &[&str] = &[
    "Traceback (most recent call last):
  File \"/app/worker.py\", line 42, in <module>
    main()
  File \"/app/worker.py\", line 37, in main
    total = compute(order)
            ^^^^^^^^^^^^^^
  File \"/app/worker.py\", line 21, in compute
    return sum(item[\"price\"] for item in order[\"items\"])
                                        ~~~~~^^^^^^^^^
KeyError: 'items'",
    "Traceback (most recent call last):
  File \"/app/db.py\", line 10, in connect
    return socket.create_connection((host, port), timeout=3)
ConnectionRefusedError: [Errno 111] Connection refused

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"/app/main.py\", line 5, in <module>
    db.connect()
  File \"/app/db.py\", line 12, in connect
    raise DatabaseError(\"cannot reach postgres\")
app.errors.DatabaseError: cannot reach postgres",
];

const GO: &[&str] = &[
    "panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48f5f2]

goroutine 1 [running]:
main.(*Server).handle(0x0, {0x6b3a40, 0xc00012a000})
\t/app/server.go:31 +0x12
main.main()
\t/app/main.go:9 +0x1d",
    "panic: assignment to entry in nil map

goroutine 18 [running]:
github.com/example/api/internal/cache.(*Store).Put(0xc000120000, {0x6b3a40, 0x5}, {0x5c2f00, 0xc00012a000})
\t/src/internal/cache/store.go:31 +0x8e
created by github.com/example/api/internal/server.(*Server).Start in goroutine 1
\t/src/internal/server/server.go:58 +0x125

goroutine 1 [chan receive]:
main.main()
\t/src/cmd/api/main.go:22 +0x1b4",
    "2026/11/20 10:00:00 http: panic serving 10.0.0.7:52114: runtime error: index out of range [5] with length 3
goroutine 34 [running]:
net/http.(*conn).serve.func1()
\t/usr/local/go/src/net/http/server.go:1898 +0xbe
panic({0x6f1e20?, 0x9a4b50?})
\t/usr/local/go/src/runtime/panic.go:770 +0x132
main.handler({0x7b2f28, 0xc0001b6000}, 0xc0001a4000)
\t/app/main.go:17 +0x2a",
];

const NODE: &[&str] = &[
    "TypeError: Cannot read properties of undefined (reading 'id')
    at getUser (/app/src/users.js:14:22)
    at /app/src/routes.js:31:18
    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)
    at async Promise.all (index 0)",
    "/app/server.js:27
    throw new Error('config file missing: ' + path);
    ^

Error: config file missing: /etc/app.json
    at loadConfig (/app/server.js:27:11)
    at Object.<anonymous> (/app/server.js:40:1)
    at Module._compile (node:internal/modules/cjs/loader:1364:14)
    at node:internal/main/run_main_module:28:49

Node.js v20.11.1",
    "Error: connect ECONNREFUSED 127.0.0.1:5432
    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1595:16) {
  errno: -111,
  code: 'ECONNREFUSED',
  syscall: 'connect',
  address: '127.0.0.1',
  port: 5432
}",
];

const RUBY: &[&str] = &[
    "/app/lib/billing.rb:12:in 'Integer#/': divided by 0 (ZeroDivisionError)
\tfrom /app/lib/billing.rb:12:in 'Billing.ratio'
\tfrom /app/bin/report:8:in '<main>'",
    "ActiveRecord::RecordNotFound (Couldn't find User with 'id'=42):
  app/controllers/users_controller.rb:8:in 'UsersController#show'
  actionpack (7.1.3) lib/action_controller/metal/basic_implicit_render.rb:6:in 'send_action'",
    "/usr/local/bundle/gems/redis-5.0.8/lib/redis/client.rb:44:in `call': Connection refused (Redis::CannotConnectError)
\tfrom /usr/local/bundle/gems/redis-5.0.8/lib/redis/client.rb:21:in `block in connect'
\t ... 5 levels...
\tfrom /app/worker.rb:3:in `<main>'",
    "E, [2026-11-20T10:00:00.123456 #1] ERROR -- : undefined method 'name' for nil (NoMethodError)
app/models/user.rb:14:in 'User#display_name'
app/views/users/show.html.erb:3:in '_app_views_users_show_html_erb'",
];

const DOTNET: &[&str] = &[
    "Unhandled exception. System.InvalidOperationException: Sequence contains no elements
   at System.Linq.ThrowHelper.ThrowNoElementsException()
   at System.Linq.Enumerable.First[TSource](IEnumerable`1 source)
   at Shop.Orders.OrderService.Latest(Int32 customerId) in /src/Shop/Orders/OrderService.cs:line 48
   at Program.<Main>$(String[] args) in /src/Shop/Program.cs:line 12",
    "System.AggregateException: One or more errors occurred. (Connection refused)
 ---> System.Net.Http.HttpRequestException: Connection refused (payments:443)
 ---> System.Net.Sockets.SocketException (111): Connection refused
   at System.Net.Sockets.Socket.AwaitableSocketAsyncEventArgs.ThrowException(SocketError error, CancellationToken cancellationToken)
   --- End of inner exception stack trace ---
   at System.Net.Http.HttpConnectionPool.ConnectToTcpHostAsync(String host, Int32 port, HttpRequestMessage initialRequest, Boolean async, CancellationToken cancellationToken)
--- End of stack trace from previous location ---
   at Shop.Payments.Client.ChargeAsync(Order order) in /src/Shop/Payments/Client.cs:line 31
   --- End of inner exception stack trace ---",
    "fail: Microsoft.AspNetCore.Server.Kestrel[13]
      Connection id \"0HN1Q2R3S4T5U\", Request id \"0HN1Q2R3S4T5U:00000001\": An unhandled exception was thrown by the application.
      System.InvalidOperationException: No service for type 'Shop.IClock' has been registered.
         at Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService(IServiceProvider provider, Type serviceType)
         at Shop.Startup.<>c.<Configure>b__1_0(HttpContext context) in /src/Shop/Startup.cs:line 40",
];

/// Ordinary lines that must stay events of their own around the traces.
const SINGLES: &[&str] = &[
    "2026-11-20 10:00:00.123  INFO 1 --- [main] c.e.shop.Application : Started Application in 3.2 seconds",
    "{\"ts\":\"2026-11-20T10:00:01Z\",\"level\":\"info\",\"msg\":\"GET /api/orders 200 12ms\"}",
    "level=warn msg=\"slow query\" duration=1.2s table=orders",
    "10.0.0.9 - - [20/Nov/2026:10:00:02 +0000] \"GET /healthz HTTP/1.1\" 200 2",
    "INFO:root:retrying in 5s (attempt 2 of 5)",
    "Caused the cache to be rebuilt in 40ms",
    "    indented, but no frame: at least 3 replicas are ready",
];

const PRESETS: &[(&str, &[&str])] = &[
    ("java", JAVA),
    ("python", PYTHON),
    ("go", GO),
    ("node", NODE),
    ("ruby", RUBY),
    ("dotnet", DOTNET),
];

/// Four sub-streams (two containers, stdout and stderr), each a run of singles and
/// traces (rotated so each sub-stream has its own order); returns the expected events
/// per sub-stream and the lines interleaved one sub-stream at a time.
fn interleaved(traces: &[&str]) -> (BTreeMap<StreamId, Vec<String>>, Vec<Event>) {
    let streams = [
        ("c1", "stdout"),
        ("c1", "stderr"),
        ("c2", "stdout"),
        ("c2", "stderr"),
    ];
    let mut expected = BTreeMap::new();
    let mut queues = Vec::new();
    for (n, (instance, stream)) in streams.iter().enumerate() {
        let mut events = Vec::new();
        for k in 0..traces.len() {
            events.push(SINGLES[(n + k) % SINGLES.len()].to_string());
            events.push(traces[(n + k) % traces.len()].to_string());
        }
        events.push(SINGLES[(n + 3) % SINGLES.len()].to_string());
        let lines: Vec<Event> = events
            .iter()
            .flat_map(|e| e.split('\n'))
            .map(|l| line(instance, stream, l))
            .collect();
        expected.insert((instance.to_string(), stream.to_string()), events);
        queues.push(lines.into_iter());
    }
    let mut all = Vec::new();
    loop {
        let before = all.len();
        for queue in &mut queues {
            all.extend(queue.next());
        }
        if all.len() == before {
            break;
        }
    }
    (expected, all)
}

#[test]
fn each_trace_is_one_event_per_sub_stream_for_every_preset() {
    for (preset, traces) in PRESETS {
        let (expected, lines) = interleaved(traces);
        for chosen in [*preset, "auto"] {
            let options = format!("preset = \"{chosen}\"");
            let out = run_all(&mut multiline(&options), vec![lines.clone()]);
            assert_eq!(
                by_stream(&out),
                expected,
                "{preset} traces, preset {chosen}"
            );
            // The same lines cut into small batches give the same events.
            let batches = lines.chunks(7).map(<[Event]>::to_vec).collect();
            let out = run_all(&mut multiline(&options), batches);
            assert_eq!(
                by_stream(&out),
                expected,
                "{preset} in batches of 7, {chosen}"
            );
        }
    }
}

#[test]
fn a_preset_leaves_the_other_languages_alone() {
    let (_, lines) = interleaved(PYTHON);
    let out = run_all(&mut multiline("preset = \"java\""), vec![lines.clone()]);
    assert_eq!(out.len(), lines.len(), "java does not join Python's lines");
}

#[test]
fn merged_events_keep_the_first_line_and_are_tagged_by_level() {
    let mut first = line("c1", "stderr", "Traceback (most recent call last):");
    first.timestamp = 7;
    first.fields.insert("from_first".into(), json!(true));
    let mut rest: Vec<Event> = [
        "  File \"/app/x.py\", line 1, in <module>",
        "ValueError: bad",
    ]
    .iter()
    .map(|l| line("c1", "stderr", l))
    .collect();
    rest[0].timestamp = 8;
    let out = run_all(
        &mut multiline(""),
        vec![std::iter::once(first).chain(rest).collect()],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].timestamp, 7);
    assert_eq!(out[0].fields["from_first"], json!(true));
    let mut level = crate::transforms::level::LevelTag::new(
        "t",
        &serde_json::from_value(json!({"sources": ["message"]})).unwrap(),
    );
    let mut events = out;
    crate::transforms::Transform::apply(&mut level, &mut events);
    assert_eq!(events[0].level, Some(crate::event::Level::Error));
}

#[test]
fn limits_cut_an_event_marked_truncated_and_lose_no_line() {
    let lines: Vec<String> = std::iter::once("java.lang.Error: deep".to_string())
        .chain((0..12).map(|n| format!("\tat a.B.f{n}(B.java:{n})")))
        .collect();
    let events = || lines.iter().map(|l| line("c", "stdout", l)).collect();
    let out = run_all(&mut multiline("max_lines = 5"), vec![events()]);
    let sizes: Vec<usize> = out.iter().map(|e| e.message.lines().count()).collect();
    assert_eq!(sizes, [5, 5, 3]);
    let truncated: Vec<bool> = out
        .iter()
        .map(|e| e.fields.contains_key("truncated"))
        .collect();
    assert_eq!(truncated, [true, true, false]);
    let joined: Vec<&str> = out.iter().flat_map(|e| e.message.lines()).collect();
    assert_eq!(joined, lines);

    let out = run_all(&mut multiline("max_bytes = 100"), vec![events()]);
    assert!(out.iter().all(|e| e.message.len() <= 100));
    assert!(out[0].fields["truncated"] == json!(true));
    let joined: Vec<&str> = out.iter().flat_map(|e| e.message.lines()).collect();
    assert_eq!(joined, lines);
}

#[test]
fn custom_rules_start_continue_end_and_indent() {
    let text =
        |events: Vec<Event>| -> Vec<String> { events.into_iter().map(|e| e.message).collect() };
    let lines = |ls: &[&str]| ls.iter().map(|l| line("c", "out", l)).collect::<Vec<_>>();
    let out = run_all(
        &mut multiline("preset = \"none\"\nstart_pattern = '^\\d{4}-'"),
        vec![lines(&[
            "2026-11-20 ERROR failed",
            "java.io.IOException: x",
            "\tat a.b(C.java:1)",
            "2026-11-20 INFO ok",
        ])],
    );
    assert_eq!(
        text(out),
        [
            "2026-11-20 ERROR failed\njava.io.IOException: x\n\tat a.b(C.java:1)",
            "2026-11-20 INFO ok"
        ]
    );
    let out = run_all(
        &mut multiline("preset = \"none\"\ncontinue_pattern = '^\\+'\nend_pattern = ';$'"),
        vec![lines(&[
            "SELECT *",
            "+ FROM t",
            "+ WHERE x;",
            "+ orphan",
            "next",
        ])],
    );
    assert_eq!(
        text(out),
        ["SELECT *\n+ FROM t\n+ WHERE x;", "+ orphan", "next"]
    );
    let out = run_all(
        &mut multiline("preset = \"none\"\nindented = true"),
        vec![lines(&["config:", "  a: 1", "\tb: 2", "", "done"])],
    );
    assert_eq!(text(out), ["config:\n  a: 1\n\tb: 2", "", "done"]);
}

#[test]
fn bad_options_are_refused() {
    for (options, message) in [
        ("max_lines = 0", "at least 1"),
        ("flush_timeout = \"0s\"", "longer than 0"),
        (
            "max_bytes = 2048\nmax_pending_bytes = 1024",
            "max_pending_bytes",
        ),
        ("preset = \"none\"", "needs start_pattern"),
    ] {
        let value: toml::Value = toml::from_str(options).unwrap();
        let Some(Ok(config)) = TransformConfig::deserialize_type("multiline", value) else {
            panic!("{options} deserializes");
        };
        let error = config.validate().unwrap_err();
        assert!(error.contains(message), "{options}: {error}");
    }
    let value: toml::Value = toml::from_str("start_pattern = '('").unwrap();
    assert!(matches!(
        TransformConfig::deserialize_type("multiline", value),
        Some(Err(_))
    ));
}

#[test]
fn a_sub_stream_quiet_for_flush_timeout_is_emitted() {
    let mut transform = multiline("flush_timeout = \"1s\"");
    let start = Instant::now();
    let first = transform.process(
        batch(vec![
            line("a", "out", "java.lang.Error: x"),
            line("b", "out", "single"),
        ]),
        start,
    );
    assert!(first.is_none(), "both are pending");
    assert_eq!(transform.deadline(), Some(start + Duration::from_secs(1)));
    let later = start + Duration::from_millis(600);
    let second = transform.process(batch(vec![line("a", "out", "\tat a.B.c(B.java:1)")]), later);
    assert!(second.is_none());
    assert_eq!(
        transform.deadline(),
        Some(start + Duration::from_secs(1)),
        "b is older"
    );
    let out = transform.expire(start + Duration::from_secs(1)).unwrap();
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].message, "single");
    assert_eq!(transform.deadline(), Some(later + Duration::from_secs(1)));
    assert!(
        transform
            .expire(later + Duration::from_millis(999))
            .is_none()
    );
    let out = transform.expire(later + Duration::from_secs(1)).unwrap();
    assert_eq!(
        out.events[0].message,
        "java.lang.Error: x\n\tat a.B.c(B.java:1)"
    );
    assert_eq!(transform.deadline(), None);
}

#[test]
fn the_oldest_sub_streams_are_emitted_past_the_budget() {
    let mut transform = multiline("max_streams = 2");
    let now = Instant::now();
    for (n, instance) in ["a", "b", "c"].iter().enumerate() {
        let out = transform.process(batch(vec![line(instance, "out", "x")]), now);
        assert_eq!(
            out.is_some(),
            n == 2,
            "the third sub-stream pushes the first out"
        );
        if let Some(out) = out {
            assert_eq!(out.events[0].origin.instance.as_deref(), Some("a"));
        }
    }
    assert_eq!(transform.pending_streams(), 2);

    let mut transform = multiline("max_bytes = 1024\nmax_pending_bytes = 4096");
    let text = "y".repeat(900);
    let mut emitted = 0;
    for n in 0..20 {
        let out = transform.process(batch(vec![line(&format!("i{n}"), "out", &text)]), now);
        emitted += out.map_or(0, |b| b.events.len());
        assert!(transform.pending_bytes() <= 4096);
    }
    assert_eq!(emitted + transform.pending_streams(), 20, "no event lost");
}

/// Waits until the tracker has committed `value` under the key `k`.
async fn committed_reaches(published: &mut tokio::sync::watch::Receiver<Cursors>, value: Value) {
    tokio::time::timeout(
        Duration::from_secs(60),
        published.wait_for(|cursors| cursors.get("k") == Some(&value)),
    )
    .await
    .expect("the commit is published")
    .expect("the tracker runs");
}

/// The delivery contract: a batch whose lines are pending is not finalized, and its
/// checkpoint is committed only after the event holding them is delivered.
#[tokio::test]
async fn held_lines_hold_their_batch_checkpoint_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
    let (mut acker, tracker) = spawn_tracker(
        "s".into(),
        Arc::clone(&store),
        8,
        Arc::new(Health::default()),
    );
    let committed = || store.load("s").unwrap().get("k").cloned();
    let mut published = acker.committed();
    let settle_and_wait = |batch: Batch| async move {
        batch.delivery.settle(BatchStatus::Delivered);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut transform = multiline("");
    let now = Instant::now();
    let lines = |ls: &[&str]| ls.iter().map(|l| line("c", "err", l)).collect();

    let b0 = Batch {
        events: lines(&[
            "ready",
            "Traceback (most recent call last):",
            "  File \"x.py\", line 1",
        ]),
        delivery: acker.delivery(CursorUpdate::set("k", json!(0))).await,
    };
    let out = transform.process(b0, now).unwrap();
    assert_eq!(out.events.len(), 1, "`ready` goes; the traceback waits");
    settle_and_wait(out).await;
    assert_eq!(committed(), None, "batch 0 has pending lines");

    let b1 = Batch {
        events: lines(&["ValueError: x", "next"]),
        delivery: acker.delivery(CursorUpdate::set("k", json!(1))).await,
    };
    let out = transform.process(b1, now).unwrap();
    assert_eq!(out.events.len(), 1);
    assert!(out.events[0].message.ends_with("ValueError: x"));
    let fanout_copy = Batch {
        events: out.events.clone(),
        delivery: out.delivery.clone(),
    };
    settle_and_wait(out).await;
    assert_eq!(
        committed(),
        None,
        "a fan-out copy of the traceback is in flight"
    );
    settle_and_wait(fanout_copy).await;
    assert_eq!(
        committed(),
        None,
        "the traceback spans batches 0 and 1: 0 is committed with 1, which still holds `next`"
    );

    let out = transform.flush().unwrap();
    assert_eq!(out.events[0].message, "next");
    settle_and_wait(out).await;
    committed_reaches(&mut published, json!(1)).await;
    assert_eq!(committed(), Some(json!(1)));

    // A batch whose last event ends with it is committed on its own.
    let b = Batch {
        events: lines(&["one", "two"]),
        delivery: acker.delivery(CursorUpdate::set("k", json!(10))).await,
    };
    settle_and_wait(transform.process(b, now).unwrap()).await;
    let b = Batch {
        events: lines(&["three"]),
        delivery: acker.delivery(CursorUpdate::set("k", json!(11))).await,
    };
    settle_and_wait(transform.process(b, now).unwrap()).await;
    committed_reaches(&mut published, json!(10)).await;
    assert_eq!(
        committed(),
        Some(json!(10)),
        "`three` holds only its own batch"
    );
    settle_and_wait(transform.flush().unwrap()).await;
    committed_reaches(&mut published, json!(11)).await;
    assert_eq!(committed(), Some(json!(11)));

    // A merged event that is never delivered holds every batch it came from.
    let b2 = Batch {
        events: lines(&["java.lang.Error: y"]),
        delivery: acker.delivery(CursorUpdate::set("k", json!(2))).await,
    };
    assert!(transform.process(b2, now).is_none());
    let b3 = Batch {
        events: lines(&["\tat a.B.c(B.java:1)"]),
        delivery: acker.delivery(CursorUpdate::set("k", json!(3))).await,
    };
    assert!(transform.process(b3, now).is_none());
    drop(transform.flush().unwrap());
    drop(acker);
    tracker.await.unwrap();
    assert_eq!(committed(), Some(json!(11)));
}

/// A line of the property test: sub-stream, start or continuation, and its number.
#[derive(Debug, Clone)]
struct Step {
    stream: usize,
    start: bool,
    /// Virtual time before the batch this line begins (0 = same batch as before).
    gap_ms: u64,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (
        0..3usize,
        any::<bool>(),
        prop_oneof![4 => Just(0u64), 1 => Just(130), 1 => Just(470), 1 => Just(2300)],
    )
        .prop_map(|(stream, start, gap_ms)| Step {
            stream,
            start,
            gap_ms,
        });
    prop::collection::vec(step, 1..120)
}

/// The events the model expects per sub-stream: a new event at each start line, at a
/// continuation after `timeout` of silence in its sub-stream, and every
/// `max_lines` lines.
fn model(steps: &[Step], timeout_ms: u64, max_lines: usize) -> BTreeMap<usize, Vec<Vec<String>>> {
    let mut now = 0;
    let mut last: BTreeMap<usize, u64> = BTreeMap::new();
    let mut events: BTreeMap<usize, Vec<Vec<String>>> = BTreeMap::new();
    for (n, step) in steps.iter().enumerate() {
        now += step.gap_ms;
        let text = step_text(n, step);
        let quiet = last
            .get(&step.stream)
            .is_none_or(|at| now - at >= timeout_ms);
        let list = events.entry(step.stream).or_default();
        let full = list.last().is_some_and(|e| e.len() >= max_lines);
        if step.start || quiet || full {
            list.push(vec![text]);
        } else {
            list.last_mut().unwrap().push(text);
        }
        last.insert(step.stream, now);
    }
    events
}

fn step_text(n: usize, step: &Step) -> String {
    if step.start {
        format!("java.lang.Error: line {n}")
    } else {
        format!("\tat a.B.f(B.java:{n})")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of start and continuation lines over three sub-streams, in
    /// batches with pauses between them, run through the real runner on tokio's
    /// paused clock: the lines are partitioned (none dropped, none reordered) exactly
    /// as the model says, and no event is emitted later than `flush_timeout` after
    /// its last line.
    #[test]
    fn lines_are_partitioned_and_flush_timeout_holds(steps in steps(), max_lines in 2..6usize) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let timeout = Duration::from_secs(1);
        let (emitted, arrivals) = runtime.block_on(async {
            let (to_transform, input) = crate::topology::batch_channel(1 << 24);
            let (output, mut from_transform) = crate::topology::batch_channel(1 << 24);
            let transform = multiline(&format!("max_lines = {max_lines}\nflush_timeout = \"1s\""));
            let runner = tokio::spawn(crate::topology::run_stateful(
                Box::new(transform),
                crate::topology::Flow::transform("t"),
                crate::topology::Chain::default(),
                input,
                crate::topology::Fanout::new(vec![output]),
            ));
            let collector = tokio::spawn(async move {
                let mut emitted = Vec::new();
                while let Some(batch) = from_transform.recv().await {
                    let at = Instant::now();
                    for event in batch.events {
                        emitted.push((at, event));
                    }
                }
                emitted
            });
            let mut arrivals = BTreeMap::new();
            let mut pending: Vec<Event> = Vec::new();
            for (n, step) in steps.iter().enumerate() {
                if step.gap_ms > 0 && !pending.is_empty() {
                    to_transform.send(batch(std::mem::take(&mut pending))).await.unwrap();
                }
                if step.gap_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(step.gap_ms)).await;
                }
                let text = step_text(n, step);
                arrivals.insert(text.clone(), Instant::now());
                pending.push(line(&step.stream.to_string(), "out", &text));
            }
            to_transform.send(batch(pending)).await.unwrap();
            // Let everything fall due before the input ends.
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(to_transform);
            runner.await.unwrap().unwrap();
            (collector.await.unwrap(), arrivals)
        });
        let mut got: BTreeMap<usize, Vec<Vec<String>>> = BTreeMap::new();
        for (at, event) in &emitted {
            let lines: Vec<String> = event.message.split('\n').map(String::from).collect();
            let last_line = arrivals[lines.last().unwrap()];
            prop_assert!(
                *at <= last_line + timeout,
                "emitted {:?} after its last line", *at - last_line
            );
            let stream = event.origin.instance.as_deref().unwrap().parse().unwrap();
            got.entry(stream).or_default().push(lines);
        }
        prop_assert_eq!(got, model(&steps, timeout.as_millis() as u64, max_lines));
    }
}
