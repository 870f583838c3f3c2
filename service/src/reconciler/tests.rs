//! The reconciler's decisions, with a fake uplink source, kernel, LAN and notifier.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::rc::Rc;

use tokio::sync::{mpsc, oneshot, watch};

use super::*;
use crate::address_book::tests::{uplink, FakeLan};
use crate::bus::NewGuest;
use crate::carrier::{Carriers, TapFeed};
use crate::executor::Outcome;
use crate::model::Mac;
use crate::ndp::{Found, Routers};
use crate::planner::{Desired, GuestPlan, HostRoute, Sysctl};
use crate::view::GuestView;

/// Every kernel call, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    SyncAll { routes: Vec<(IpAddr, String)> },
    SyncRoutes { routes: Vec<(IpAddr, String)> },
    EnsureGuest { tap: String, routes: Vec<IpAddr>, previous: Vec<IpAddr> },
    RemoveGuest { tap: String, routes: Vec<IpAddr> },
    SyncHost(Vec<String>),
}

#[derive(Default)]
struct FakeKernel {
    calls: Rc<RefCell<Vec<Call>>>,
    failing_taps: BTreeSet<String>,
    /// What the kernel refuses in every step, e.g. a sysctl write.
    refused: Rc<RefCell<Vec<String>>>,
}

impl FakeKernel {
    fn outcome_for(&self, taps: impl IntoIterator<Item = String>) -> Outcome {
        let mut outcome = Outcome { errors: self.refused.borrow().clone(), ..Outcome::default() };
        for (index, tap) in taps.into_iter().enumerate() {
            if self.failing_taps.contains(&tap) {
                outcome.errors.push(format!("{tap}: Operation not permitted"));
                outcome.failed_taps.insert(tap);
            } else {
                outcome.tap_indexes.insert(tap, 10 + index as u32);
            }
        }
        outcome
    }
}

impl Kernel for FakeKernel {
    fn record_originals(&self, wanted: &[Sysctl], saved: &mut SavedSysctls) -> Result<bool, String> {
        let before = saved.len();
        for setting in wanted {
            saved.entry(setting.key.clone()).or_insert_with(|| "0".into());
        }
        Ok(saved.len() > before)
    }

    async fn sync_all(&mut self, desired: &Desired, saved: &mut SavedSysctls) -> Outcome {
        let routes = desired.routes.iter().map(|r| (r.address, r.tap.clone())).collect();
        self.calls.borrow_mut().push(Call::SyncAll { routes });
        saved.retain(|key, _| desired.host_sysctls.iter().any(|s| s.key == *key));
        self.outcome_for(desired.taps.iter().map(|t| t.name.clone()))
    }

    async fn sync_routes(
        &mut self,
        desired: &Desired,
        saved: &mut SavedSysctls,
        _taps: &BTreeMap<String, u32>,
    ) -> Outcome {
        let routes = desired.routes.iter().map(|r| (r.address, r.tap.clone())).collect();
        self.calls.borrow_mut().push(Call::SyncRoutes { routes });
        saved.retain(|key, _| desired.host_sysctls.iter().any(|s| s.key == *key));
        Outcome::default()
    }

    async fn ensure_guest(&mut self, plan: &GuestPlan, previous: &[HostRoute]) -> Outcome {
        let routes = plan.routes.iter().map(|r| r.address).collect();
        let previous = previous.iter().map(|r| r.address).collect();
        self.calls.borrow_mut().push(Call::EnsureGuest { tap: plan.tap.name.clone(), routes, previous });
        self.outcome_for([plan.tap.name.clone()])
    }

    async fn remove_guest(&mut self, tap: &str, routes: &[HostRoute]) -> Outcome {
        let routes = routes.iter().map(|r| r.address).collect();
        self.calls.borrow_mut().push(Call::RemoveGuest { tap: tap.into(), routes });
        Outcome::default()
    }

    fn sync_host(&mut self, wanted: &[Sysctl], saved: &mut SavedSysctls) -> Outcome {
        self.calls.borrow_mut().push(Call::SyncHost(wanted.iter().map(|s| s.key.clone()).collect()));
        saved.retain(|key, _| wanted.iter().any(|s| s.key == *key));
        Outcome::default()
    }

    async fn settle(&mut self) -> Outcome {
        Outcome::default()
    }

    fn forget(&mut self) {}
}

#[derive(Default)]
struct Told {
    announced: Vec<Ipv4Addr>,
    renewed: Vec<(String, Ipv4Addr, Ipv4Addr)>,
    rehomed: Vec<(String, String)>,
    guest_changes: Vec<(String, Option<String>, Option<String>)>,
    problems_changed: usize,
}

#[derive(Default, Clone)]
struct FakeNotifier(Rc<RefCell<Told>>);

impl Notifier for FakeNotifier {
    fn announce(&self, _: &str, addresses: Vec<Ipv4Addr>) {
        self.0.borrow_mut().announced.extend(addresses);
    }
    fn ask_to_renew(&self, guest: &Guest, old: Ipv4Addr, new: Ipv4Addr) {
        self.0.borrow_mut().renewed.push((guest.name.clone(), old, new));
    }
    async fn publish(&self, _: &ManagerView, _: &ManagerView, rehomed: Option<(Subnet, Subnet)>) {
        if let Some((old, new)) = rehomed {
            self.0.borrow_mut().rehomed.push((old.to_string(), new.to_string()));
        }
    }
    async fn publish_guest(&self, name: &str, old: Option<&GuestView>, new: Option<&GuestView>) {
        let address = |view: Option<&GuestView>| view.map(|v| v.address.clone());
        self.0.borrow_mut().guest_changes.push((name.into(), address(old), address(new)));
    }
    async fn problems_changed(&self) {
        self.0.borrow_mut().problems_changed += 1;
    }
}

struct FakeSource(Option<Uplink>);

impl UplinkSource for FakeSource {
    async fn read(&self) -> Result<Option<Uplink>, String> {
        Ok(self.0.clone())
    }
}

type TestReconciler<'a> = Reconciler<FakeSource, FakeKernel, &'a FakeLan, FakeNotifier>;

struct Bench {
    dir: PathBuf,
    calls: Rc<RefCell<Vec<Call>>>,
    told: Rc<RefCell<Told>>,
    view: watch::Receiver<ManagerView>,
    leases: watch::Receiver<Leases>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn home() -> Uplink {
    uplink("198.51.100.10", 24, "198.51.100.1")
}

fn office() -> Uplink {
    uplink("203.0.113.9", 24, "203.0.113.1")
}

fn reconciler<'a>(
    tag: &str,
    lan: &'a FakeLan,
    up: Option<Uplink>,
    failing: &[&str],
) -> (TestReconciler<'a>, Bench) {
    let dir = std::env::temp_dir().join(format!("vmnet-reconciler-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let kernel =
        FakeKernel { failing_taps: failing.iter().map(|t| t.to_string()).collect(), ..FakeKernel::default() };
    let calls = kernel.calls.clone();
    let notifier = FakeNotifier::default();
    let told = notifier.0.clone();
    let (view, view_reader) = watch::channel(ManagerView::default());
    let (leases, leases_reader) = watch::channel(Leases::default());
    let (ready, _) = watch::channel(false);
    let mut config = Config::default();
    config.arp.probe_ms = 200;
    let state_file = StateFile::new(&dir);
    let state = state_file.load().unwrap();
    let (routers, _) = watch::channel(Routers::default());
    let outputs = Outputs { view, ready, leases, routers, notifier };
    let reconciler =
        Reconciler::new(config, FakeSource(up.clone()), kernel, lan, state_file, state, up, outputs);
    (reconciler, Bench { dir, calls, told, view: view_reader, leases: leases_reader })
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(future)
}

fn new_guest(name: &str) -> NewGuest {
    NewGuest {
        name: name.into(),
        owner: 1000,
        mac: None,
        address: None,
        qmp: Some(format!("/run/user/1000/{name}.qmp")),
    }
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[test]
fn adding_and_removing_a_guest_touches_only_that_guest() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("addremove", &lan, Some(home()), &[]);
    run(async {
        r.start().await;
        r.add_guest(new_guest("web")).await.unwrap();
        r.add_guest(new_guest("db")).await.unwrap();
        r.remove_guest("web").await.unwrap();
        r.remove_guest("db").await.unwrap();
    });
    let forward = vec!["net/ipv4/ip_forward".to_owned(), "net/ipv4/neigh/wlan0/proxy_delay".to_owned()];
    assert_eq!(
        *bench.calls.borrow(),
        [
            Call::SyncAll { routes: vec![] },
            Call::SyncHost(forward),
            Call::EnsureGuest {
                tap: "vmt-web".into(),
                routes: vec![ip("198.51.100.200").into()],
                previous: vec![]
            },
            Call::EnsureGuest {
                tap: "vmt-db".into(),
                routes: vec![ip("198.51.100.201").into()],
                previous: vec![]
            },
            Call::RemoveGuest { tap: "vmt-web".into(), routes: vec![ip("198.51.100.200").into()] },
            Call::RemoveGuest { tap: "vmt-db".into(), routes: vec![ip("198.51.100.201").into()] },
            Call::SyncHost(vec![]),
        ],
        "host settings with the first guest and after the last one only"
    );
    assert_eq!(bench.told.borrow().announced, [ip("198.51.100.200"), ip("198.51.100.201")]);
    assert!(bench.view.borrow().guests.is_empty() && bench.leases.borrow().taps.is_empty());
    assert!(r.saved.is_empty(), "the saved values were restored and forgotten");
}

#[test]
fn a_new_guest_is_published_with_its_lease_and_persisted() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("publish", &lan, Some(home()), &[]);
    run(async {
        r.start().await;
        r.add_guest(new_guest("web")).await.unwrap();
    });
    assert_eq!(bench.view.borrow().guests["web"].address, "198.51.100.200");
    let leases = bench.leases.borrow();
    assert_eq!(leases.taps["vmt-web"].lease.address, Some(ip("198.51.100.200")));
    assert_eq!(leases.taps["vmt-web"].ifindex, 10);
    let state = StateFile::new(&bench.dir).load().unwrap();
    assert_eq!((state.guests[0].guest.name.as_str(), state.guests[0].host_number), ("web", Some(200)));
    assert_eq!(state.saved_sysctls.len(), 2, "originals recorded before the first write");
}

#[test]
fn a_guest_whose_tap_fails_is_refused_and_leaves_nothing() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("tapfails", &lan, Some(home()), &["vmt-web"]);
    let result = run(async {
        r.start().await;
        r.add_guest(new_guest("web")).await
    });
    let Err(vmnet_dbus::Error::Failed(message)) = result else { panic!("{result:?}") };
    assert!(message.contains("Operation not permitted"), "{message}");
    assert!(r.guests.is_empty() && r.saved.is_empty());
    assert!(StateFile::new(&bench.dir).load().unwrap().guests.is_empty());
    assert_eq!(bench.calls.borrow().last(), Some(&Call::SyncHost(vec![])), "host settings restored");
}

#[test]
fn a_roam_rehomes_every_guest_and_asks_them_to_renew() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("roam", &lan, Some(home()), &[]);
    run(async {
        r.start().await;
        r.add_guest(new_guest("web")).await.unwrap();
        r.add_guest(NewGuest { address: Some(ip("198.51.100.9")), ..new_guest("db") }).await.unwrap();
        // In the office the host has .9: db moves to the next free pool address.
        r.set_uplink(Some(office())).await;
        r.converge().await.unwrap();
    });
    let routes = vec![
        (ip("203.0.113.201").into(), "vmt-db".to_owned()),
        (ip("203.0.113.200").into(), "vmt-web".to_owned()),
    ];
    assert_eq!(bench.calls.borrow().last(), Some(&Call::SyncAll { routes }));
    let told = bench.told.borrow();
    assert_eq!(told.rehomed, [("198.51.100.0/24".to_owned(), "203.0.113.0/24".to_owned())]);
    assert_eq!(
        told.renewed,
        [
            ("db".to_owned(), ip("198.51.100.9"), ip("203.0.113.201")),
            ("web".to_owned(), ip("198.51.100.200"), ip("203.0.113.200")),
        ]
    );
    assert_eq!(bench.leases.borrow().params.as_ref().map(|p| p.server), Some(ip("203.0.113.9")));
}

#[test]
fn offline_guests_keep_their_taps_and_lose_their_routes() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("offline", &lan, Some(home()), &[]);
    run(async {
        r.start().await;
        r.add_guest(new_guest("web")).await.unwrap();
        r.set_uplink(None).await;
        r.converge().await.unwrap();
    });
    assert_eq!(bench.calls.borrow().last(), Some(&Call::SyncAll { routes: vec![] }));
    assert_eq!(bench.view.borrow().guests["web"].state, vmnet_dbus::guest_state::OFFLINE);
    assert!(bench.leases.borrow().params.is_none(), "nothing is served offline");
}

#[test]
fn a_declined_address_moves_only_that_guest() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("decline", &lan, Some(home()), &[]);
    run(async {
        r.start().await;
        r.add_guest(new_guest("web")).await.unwrap();
        r.add_guest(new_guest("db")).await.unwrap();
        r.declined(Declined { guest: "web".into(), address: ip("198.51.100.200") }).await;
        // A stale notice (not its address any more) changes nothing.
        r.declined(Declined { guest: "web".into(), address: ip("198.51.100.200") }).await;
    });
    let calls = bench.calls.borrow();
    let moved = Call::EnsureGuest {
        tap: "vmt-web".into(),
        routes: vec![ip("198.51.100.202").into()],
        previous: vec![ip("198.51.100.200").into()],
    };
    assert_eq!(calls.last(), Some(&moved));
    assert_eq!(calls.iter().filter(|c| matches!(c, Call::SyncAll { .. })).count(), 1, "no full sync");
    assert_eq!(bench.view.borrow().guests["db"].address, "198.51.100.201");
}

#[test]
fn a_state_file_that_cannot_be_written_refuses_the_change() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("readonly", &lan, Some(home()), &[]);
    run(async { r.start().await });
    // The state directory replaced by a file: every write fails.
    std::fs::remove_dir_all(&bench.dir).unwrap();
    std::fs::write(&bench.dir, "").unwrap();
    let result = run(r.add_guest(new_guest("web")));
    std::fs::remove_file(&bench.dir).unwrap();
    let Err(vmnet_dbus::Error::Failed(message)) = result else { panic!("{result:?}") };
    assert!(message.contains("cannot save state"), "{message}");
    assert!(r.guests.is_empty());
    assert!(
        !bench.calls.borrow().iter().any(|c| matches!(c, Call::EnsureGuest { .. })),
        "the kernel saw nothing"
    );
}

#[test]
fn a_roam_is_applied_even_when_the_state_cannot_be_written_and_the_write_is_retried() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("roamro", &lan, Some(home()), &[]);
    run(async {
        r.start().await;
        r.add_guest(new_guest("web")).await.unwrap();
    });
    std::fs::remove_dir_all(&bench.dir).unwrap();
    std::fs::write(&bench.dir, "").unwrap();
    run(r.set_uplink(Some(office())));
    let result = run(r.converge());
    std::fs::remove_file(&bench.dir).unwrap();
    assert!(result.is_err(), "the failed write is reported");
    let routes = vec![(ip("203.0.113.200").into(), "vmt-web".to_owned())];
    assert_eq!(
        bench.calls.borrow().last(),
        Some(&Call::SyncAll { routes }),
        "the kernel is in the new subnet"
    );
    assert!(r.retry.is_some(), "the write is retried");
    run(r.converge()).unwrap();
    let state = StateFile::new(&bench.dir).load().unwrap();
    assert_eq!(state.last_subnet.map(|s| s.to_string()).as_deref(), Some("203.0.113.0/24"));
}

#[test]
fn the_loop_coalesces_uplink_changes_and_serves_commands() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("loop", &lan, Some(home()), &[]);
    let (uplink_tx, uplink_rx) = watch::channel(Some(home()));
    let (commands_tx, commands_rx) = mpsc::channel(4);
    let (_declines_tx, declines_rx) = mpsc::channel(4);
    let (taps_rx, _taps_tx) = TapFeed::fixed(Carriers::default());
    run(async {
        r.start().await;
        // Three readings before the loop runs: only the last one counts.
        uplink_tx.send_replace(None);
        uplink_tx.send_replace(Some(home()));
        uplink_tx.send_replace(Some(office()));
        let (reply, answer) = oneshot::channel();
        commands_tx.send(Command::AddGuest(new_guest("web"), reply)).await.unwrap();
        // Every input stays open: the loop runs until the time is up, which is plenty for both.
        let (_found_tx, ndp) = mpsc::channel(1);
        let inputs =
            Inputs { uplink: uplink_rx, commands: commands_rx, declines: declines_rx, ndp, taps: taps_rx };
        let stopped = tokio::time::timeout(std::time::Duration::from_millis(500), r.run(inputs)).await;
        assert!(stopped.is_err(), "the loop ran until the time was up");
        assert!(answer.await.unwrap().is_ok());
        drop((commands_tx, uplink_tx));
    });
    let calls = bench.calls.borrow();
    let syncs = calls.iter().filter(|c| matches!(c, Call::SyncAll { .. })).count();
    assert_eq!(syncs, 2, "the start and one for the burst");
    let moved = calls.iter().position(|c| matches!(c, Call::SyncRoutes { .. })).expect("routes moved");
    assert!(matches!(calls.get(moved + 1), Some(Call::SyncAll { .. })), "then the full sync: {calls:?}");
    assert_eq!(bench.view.borrow().guests["web"].address, "203.0.113.200");
}

#[test]
fn each_owner_has_a_guest_limit_but_root_has_none() {
    let lan = FakeLan::default();
    let (mut r, _bench) = reconciler("limit", &lan, Some(home()), &[]);
    r.config.limits.guests_per_owner = 2;
    run(async {
        r.start().await;
        r.add_guest(new_guest("a")).await.unwrap();
        r.add_guest(new_guest("b")).await.unwrap();
        let refused = r.add_guest(new_guest("c")).await;
        assert!(
            matches!(&refused, Err(vmnet_dbus::Error::LimitExceeded(m)) if m.contains("user 1000 has 2")),
            "{refused:?}"
        );
        r.add_guest(NewGuest { owner: 1001, ..new_guest("d") }).await.unwrap();
        for name in ["e", "f", "g"] {
            r.add_guest(NewGuest { owner: 0, ..new_guest(name) }).await.unwrap();
        }
        r.remove_guest("a").await.unwrap();
        r.add_guest(new_guest("c")).await.unwrap();
    });
    assert_eq!(r.guests.len(), 6);
}

#[test]
fn what_the_kernel_refuses_is_published_as_problems_until_a_clean_sync() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("problems", &lan, Some(home()), &[]);
    let refused = r.kernel.refused.clone();
    let sysctl = "sysctl net/ipv4/conf/vmt-web/rp_filter: Read-only file system (os error 30)".to_owned();
    run(async {
        r.start().await;
        refused.borrow_mut().push(sysctl.clone());
        r.add_guest(new_guest("web")).await.unwrap();
    });
    assert_eq!(bench.view.borrow().problems, std::slice::from_ref(&sysctl));
    assert_eq!(bench.told.borrow().problems_changed, 1);
    assert!(r.retry.is_some(), "retried with back-off");
    run(r.converge()).unwrap();
    assert_eq!(bench.view.borrow().problems, [sysctl], "still refused: still a problem");
    refused.borrow_mut().clear();
    run(r.converge()).unwrap();
    assert!(bench.view.borrow().problems.is_empty(), "a clean sync clears them");
}

#[test]
fn a_tap_deleted_from_outside_is_set_up_again() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("vanished", &lan, Some(home()), &[]);
    run(async {
        r.start().await;
        r.add_guest(new_guest("web")).await.unwrap();
        r.add_guest(new_guest("db")).await.unwrap();
        let present: Carriers = [("vmt-db".to_owned(), false)].into();
        r.recreate_vanished_taps(&present).await;
    });
    let again = Call::EnsureGuest {
        tap: "vmt-web".into(),
        routes: vec![ip("198.51.100.200").into()],
        previous: vec![],
    };
    assert_eq!(bench.calls.borrow().last(), Some(&again), "only the vanished tap");
    assert!(bench.leases.borrow().taps.contains_key("vmt-web"), "served again");

    // One change at a time, as the tap feed reports them: only a guest's tap is set up again.
    let calls = bench.calls.borrow().len();
    run(r.recreate_vanished_tap("vmt-other"));
    assert_eq!(bench.calls.borrow().len(), calls, "not a guest's tap: nothing");
    run(r.recreate_vanished_tap("vmt-db"));
    let again = Call::EnsureGuest {
        tap: "vmt-db".into(),
        routes: vec![ip("198.51.100.201").into()],
        previous: vec![],
    };
    assert_eq!(bench.calls.borrow().last(), Some(&again));
}

#[test]
fn guests_and_addresses_survive_a_restart() {
    let lan = FakeLan::default();
    let (mut r, bench) = reconciler("restart", &lan, Some(home()), &[]);
    run(async {
        r.start().await;
        r.add_guest(NewGuest { mac: Some(Mac([0x52, 0x54, 0, 1, 2, 3])), ..new_guest("web") }).await.unwrap();
    });
    drop(r);
    let probes = lan.probed.borrow().len();
    let state = StateFile::new(&bench.dir).load().unwrap();
    let (view, _) = watch::channel(ManagerView::default());
    let (leases, _) = watch::channel(Leases::default());
    let (ready, _) = watch::channel(false);
    let (routers, _) = watch::channel(Routers::default());
    let outputs = Outputs { view, ready, leases, routers, notifier: FakeNotifier::default() };
    let kernel = FakeKernel::default();
    let calls = kernel.calls.clone();
    let mut again = Reconciler::new(
        Config::default(),
        FakeSource(Some(home())),
        kernel,
        &lan,
        StateFile::new(&bench.dir),
        state,
        Some(home()),
        outputs,
    );
    run(again.start());
    assert_eq!(
        *calls.borrow(),
        [Call::SyncAll { routes: vec![(ip("198.51.100.200").into(), "vmt-web".into())] }]
    );
    assert_eq!(lan.probed.borrow().len(), probes, "its address was probed before the restart");
}

/// `up` with the /64 `prefix` (e.g. "2001:db8:1::").
fn dual_stack(up: Uplink, prefix: &str) -> Uplink {
    let address: std::net::Ipv6Addr = format!("{prefix}10").parse().unwrap();
    let prefix = crate::model::Prefix6::containing(address, 64).unwrap();
    Uplink { ipv6: Some(crate::model::Uplink6 { prefix, address, gateway: None, nameservers: vec![] }), ..up }
}

#[test]
fn ipv6_addresses_are_routed_in_their_prefix_and_again_when_the_laptop_comes_back() {
    let lan = FakeLan::default();
    let (home6, office6) = (dual_stack(home(), "2001:db8:1::"), dual_stack(office(), "2001:db8:2::"));
    let (mut r, bench) = reconciler("ipv6back", &lan, Some(home6.clone()), &[]);
    let ip6 = |text: &str| text.parse::<std::net::Ipv6Addr>().unwrap();
    let in_use = |address: &str| Found::InUse { guest: "web".into(), address: ip6(address) };
    let routed6 = |bench: &Bench| bench.view.borrow().guests["web"].addresses6.clone();
    run(async {
        r.start().await;
        r.add_guest(new_guest("web")).await.unwrap();
        r.found6(in_use("2001:db8:1::5")).await;
        r.found6(in_use("2001:db8:9::5")).await; // not the uplink's prefix
        r.found6(Found::InUse { guest: "nobody".into(), address: ip6("2001:db8:1::6") }).await;
    });
    assert_eq!(routed6(&bench), ["2001:db8:1::5"]);
    let last = bench.calls.borrow().last().cloned();
    let v4: IpAddr = ip("198.51.100.200").into();
    assert_eq!(
        last,
        Some(Call::EnsureGuest {
            tap: "vmt-web".into(),
            routes: vec![v4, ip6("2001:db8:1::5").into()],
            previous: vec![v4]
        })
    );
    // At the office: not routed; back home: routed again (the guest takes it up without a DAD).
    run(async {
        r.set_uplink(Some(office6)).await;
        r.converge().await.unwrap();
    });
    assert!(routed6(&bench).is_empty());
    run(async {
        r.set_uplink(Some(home6)).await;
        r.converge().await.unwrap();
    });
    assert_eq!(routed6(&bench), ["2001:db8:1::5"]);
    assert!(matches!(bench.calls.borrow().last(), Some(Call::SyncAll { routes }) if routes.len() == 2));
    // Kept in the state file: a restarted vmnetd routes it from the start.
    let state = StateFile::new(&bench.dir).load().unwrap();
    assert_eq!(state.guests[0].addresses6.iter().collect::<Vec<_>>(), [&ip6("2001:db8:1::5")]);
    // Unused: forgotten, and its route goes.
    run(r.found6(Found::Unused { guest: "web".into(), address: ip6("2001:db8:1::5") }));
    assert!(routed6(&bench).is_empty());
    let last = bench.calls.borrow().last().cloned();
    assert_eq!(
        last,
        Some(Call::EnsureGuest {
            tap: "vmt-web".into(),
            routes: vec![v4],
            previous: vec![v4, ip6("2001:db8:1::5").into()]
        })
    );
}
