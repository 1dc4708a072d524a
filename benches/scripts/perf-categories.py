#!/usr/bin/env python3
"""Cost categories of a Meridian profile, from `perf script` output on stdin.

    perf script -i perf.data -F comm,tid,ip,sym,dso | python3 benches/scripts/perf-categories.py

Prints (1) self time by category of the leaf frame, (2) inclusive time of
each category (share of samples with a matching frame anywhere on the
stack), (3) the top leaf symbols. Percentages are of all samples of the
process (cpu-clock: this VM has no hardware counters).
"""
import re
import sys
from collections import Counter

# Inclusive: a sample counts for a category when any frame matches.
INCLUSIVE = [
    ("syscalls (entry_SYSCALL, all kernel work under a syscall)", r"entry_SYSCALL|do_syscall_64"),
    ("  of which send/write (tcp_sendmsg)", r"tcp_sendmsg"),
    ("  of which recv/read (tcp_recvmsg)", r"tcp_recvmsg"),
    ("  of which epoll_wait", r"do_epoll_wait|__x64_sys_epoll_wait"),
    ("  of which futex / wake-ups", r"futex"),
    ("softirq / loopback delivery", r"do_softirq|net_rx_action|__netif_receive_skb"),
    ("hyper h1 dispatch, server and client (parse, encode, I/O)", r"hyper::proto::h1::dispatch|hyper::proto::h1::conn"),
    ("  hyper h1 header parse (role::parse, httparse)", r"hyper::proto::h1::role::.*parse|httparse"),
    ("  hyper h1 header encode (role::encode)", r"hyper::proto::h1::role::.*encode"),
    ("upstream side: hyper client conn task (h1 client dispatch + its I/O)", r"hyper::client::conn|role::Client"),
    ("hyper-util legacy client (request + pool)", r"hyper_util::client::legacy"),
    ("  hyper-util pool", r"hyper_util::client::legacy::pool"),
    ("meridian::proxy (the request's own code, upstream call included)", r"meridian::proxy::"),
    ("  JSON: request_body::probe", r"meridian::request_body::probe"),
    ("  JSON: usage::from_json (answer)", r"meridian::usage::from_json"),
    ("  JSON: serde_json anywhere", r"serde_json::"),
    ("  auth (authenticate, hash_key, sha2)", r"meridian::auth::|sha2::|hash_key"),
    ("  routing lookup + select::plan", r"meridian::routing::.*lookup|meridian::select::|RoutingSnapshot>::lookup"),
    ("  health recording (HealthSink)", r"meridian::health::HealthSink"),
    ("  scrubbing (Scrubber, regex)", r"meridian::scrub::|regex::|regex_automata::"),
    ("  request build (forms, build_request, headers)", r"meridian::proxy::request::build_request|meridian::proxy::forms::|meridian::proxy::headers::"),
    ("  tenants / capacity", r"meridian::tenants::|meridian::capacity::"),
    ("  metrics (prometheus, latency)", r"meridian::metrics::|prometheus_client::"),
    ("tracing (spans, events, subscriber; not the Instrumented wrapper)", r"tracing_core::|tracing_subscriber::|tracing::span::Span::(new|enter|exit|record)|tracing::Span::(new|enter|exit)|tracing::__macro_support"),
    ("telemetry (OpenTelemetry)", r"opentelemetry|meridian::telemetry::"),
    ("allocation (malloc/free/realloc, jemalloc)", r"_rjem_|je_|jemalloc|\bmalloc\b|\bfree\b|realloc|cfree|__libc_malloc|_int_malloc|_int_free"),
    ("tokio wake-ups (waker wake, schedule)", r"wake_by_ref|wake_by_val|Waker.*wake|tokio::runtime::scheduler::current_thread::.*schedule|tokio::runtime::task::waker"),
    ("tokio spawn (new task per connection or request)", r"tokio::runtime::task::spawn|tokio::task::spawn|TokioExecutor.*execute|hyper_util::rt::tokio::TokioExecutor"),
    ("  tokio I/O driver (epoll turn)", r"tokio::runtime::io::driver"),
    ("  tokio timers (sleep, timeout)", r"tokio::runtime::time::|tokio::time::"),
    ("memcpy/memmove", r"memcpy|memmove|__memcpy|__memmove"),
    ("clock reads (clock_gettime, Instant::now)", r"clock_gettime|Instant::now|read_tsc"),
    ("std HashMap hashing (SipHash)", r"DefaultHasher|sip::Hasher|hash_one"),
]
LEAF = [
    ("kernel", lambda s, d: "kernel" in d or d.startswith("[")),
    ("allocation (jemalloc)", lambda s, d: re.search(r"_rjem_|je_|jemalloc|malloc|free|realloc", s) is not None),
    ("libc (memcpy etc.)", lambda s, d: "libc" in d),
    ("hyper", lambda s, d: s.startswith("hyper::") or "httparse" in s),
    ("hyper-util", lambda s, d: s.startswith("hyper_util::")),
    ("tokio", lambda s, d: "tokio::" in s),
    ("serde_json", lambda s, d: "serde_json" in s),
    ("tracing", lambda s, d: "tracing" in s),
    ("http / bytes / headers", lambda s, d: s.startswith(("http::", "bytes::", "<http::", "<bytes::"))),
    ("regex", lambda s, d: "regex" in s),
    ("sha2", lambda s, d: "sha2" in s),
    ("meridian", lambda s, d: "meridian" in s),
    ("other", lambda s, d: True),
]

def strip_generics(name):
    """`poll<hyper::X<..>>` -> `poll`: generic arguments name the types a
    function was instantiated for, not who is running, and would make every
    frame under a task match that task's types."""
    out, depth = [], 0
    for i, ch in enumerate(name):
        if ch == "<" and (depth > 0 or (i > 0 and (name[i - 1].isalnum() or name[i - 1] in "_}"))):
            depth += 1
            continue
        if ch == ">" and depth > 0:
            depth -= 1
            continue
        if depth == 0:
            out.append(ch)
    return "".join(out)


# Exclusive: each sample goes to the first task kind found from the root
# down (the frame right under tokio's task poll says which task it is).
TASKS = [
    ("upstream connection task (hyper h1 client dispatcher + its socket I/O)", r"UpgradeableConnection|dispatch::Client|hyper::client::conn"),
    ("client connection task (hyper h1 server + Meridian's handler)", r"meridian::server::serve::\{\{closure\}\}::\{\{closure\}\}|hyper_util::server::conn::auto|dispatch::Server|role::Server"),
    ("runtime idle/driver (epoll, timers, park)", r"park|tokio::runtime::io::driver|tokio::runtime::time|epoll_wait"),
]


def samples(lines):
    cur = None
    for line in lines:
        if not line.strip():
            if cur:
                yield cur
            cur = None
            continue
        if not line.startswith((" ", "\t")):
            if cur:
                yield cur
            cur = {"head": line, "frames": []}
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2 or cur is None:
            continue
        rest = parts[1]
        m = re.match(r"(.*) \((.*)\)$", rest)
        sym, dso = (m.group(1), m.group(2)) if m else (rest, "")
        sym = strip_generics(re.sub(r"\+0x[0-9a-f]+$", "", sym))
        cur["frames"].append((sym, dso))
    if cur:
        yield cur

def main():
    only = sys.argv[1] if len(sys.argv) > 1 else None
    total = 0
    inc = Counter()
    leafcat = Counter()
    leafsym = Counter()
    mer = Counter()
    tasks = Counter()
    tcomp = [(n, re.compile(p)) for n, p in TASKS]
    comps = [(n, re.compile(p)) for n, p in INCLUSIVE]
    for s in samples(sys.stdin):
        if only and only not in s["head"]:
            continue
        if not s["frames"]:
            continue
        total += 1
        stack = "\n".join(f for f, _ in s["frames"] if "Instrumented" not in f)
        for n, c in comps:
            if c.search(stack):
                inc[n] += 1
        thread = s["head"].split()[0] if s["head"].split() else "?"
        if not thread.startswith("meridian-worke"):
            tasks["other threads: " + thread] += 1
        else:
            for n, c in tcomp:
                if c.search(stack):
                    tasks[n] += 1
                    break
            else:
                tasks["worker, other (accept loop, health, ...)"] += 1
        for f in {f[:120] for f, _ in s["frames"] if f.startswith(("meridian::", "<meridian::"))}:
            mer[f] += 1
        sym, dso = s["frames"][0]
        leafsym[(sym[:110], dso.split("/")[-1])] += 1
        for n, f in LEAF:
            if f(sym, dso):
                leafcat[n] += 1
                break
    print(f"samples: {total}")
    print("\n## by task or thread (exclusive)")
    for n, c in tasks.most_common():
        print(f"{100*c/total:6.1f}%  {n}")
    print("\n## self time by leaf category")
    for n, c in leafcat.most_common():
        print(f"{100*c/total:6.1f}%  {n}")
    print("\n## inclusive (any frame on the stack)")
    for n, _ in INCLUSIVE:
        print(f"{100*inc[n]/total:6.1f}%  {n}")
    print("\n## top meridian:: frames, inclusive")
    for f, c in mer.most_common(30):
        print(f"{100*c/total:6.1f}%  {f}")
    print("\n## top leaf symbols")
    for (sym, dso), c in leafsym.most_common(40):
        print(f"{100*c/total:6.1f}%  {sym}  [{dso}]")

main()
