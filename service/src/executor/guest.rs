//! One guest's kernel state: its tap (created persistent and owned by the guest's user, its
//! own sysctls written, then up with the uplink's MTU, with its router link-local while the
//! uplink has IPv6), the /32 and /128 routes to it and the uplink's proxy entries for its
//! addresses.

use std::net::IpAddr;

use super::{tun, Executor, Outcome};
use crate::netlink::{host_prefix_len, Link, Route, VMNET_ROUTE_PROTOCOL};
use crate::planner::{GuestPlan, HostRoute, TapSpec};

impl Executor {
    pub(super) async fn set_up_guest(
        &mut self,
        plan: &GuestPlan,
        previous: &[HostRoute],
        outcome: &mut Outcome,
    ) {
        // Before the tap exists (or changes address): its frames are filtered from the first.
        self.ensure_guest_filter(&plan.filter, outcome);
        let existing = match self.netlink.link_by_name(&plan.tap.name).await {
            Ok(link) => link,
            Err(e) => {
                outcome.error(e);
                outcome.failed_taps.insert(plan.tap.name.clone());
                return;
            }
        };
        let Some(link) = self.ensure_tap(&plan.tap, existing, outcome).await else { return };
        for route in &plan.routes {
            match self.netlink.replace_host_route(route.address, link.index).await {
                Ok(()) => outcome.routes_set += 1,
                Err(e) => outcome.error(e),
            }
            self.add_proxy(route, outcome).await;
        }
        let wanted = |old: &&HostRoute| plan.routes.iter().any(|r| r.address == old.address);
        for old in previous.iter().filter(|old| !wanted(old)) {
            match self.netlink.delete_route(&host_route(old.address, Some(link.index))).await {
                Ok(()) => outcome.routes_removed += 1,
                Err(e) => outcome.error(e),
            }
            self.delete_proxy(old, outcome).await;
        }
    }

    /// Creates the tap (or fixes its owner), writes its sysctls, then sets it up with the
    /// wanted MTU (so no frame is taken in before IPv6 is locked down). Returns the link as it
    /// is now, or `None` (reported) when it cannot be set up.
    pub(super) async fn ensure_tap(
        &mut self,
        spec: &TapSpec,
        existing: Option<Link>,
        outcome: &mut Outcome,
    ) -> Option<Link> {
        let set_up = match self.create_tap(spec, existing, outcome).await {
            Ok(link) => {
                self.ensure_tap_sysctls(spec, &link, outcome);
                self.bring_up(spec, link).await
            }
            Err(e) => Err(e),
        };
        if let (Ok(link), Some(router)) = (&set_up, spec.router6) {
            if let Err(e) = self.netlink.replace_link_local(link.index, router).await {
                outcome.error(e);
            }
        }
        match set_up {
            Ok(link) => {
                outcome.tap_indexes.insert(spec.name.clone(), link.index);
                Some(link)
            }
            Err(e) => {
                outcome.error(e);
                outcome.failed_taps.insert(spec.name.clone());
                None
            }
        }
    }

    async fn create_tap(
        &self,
        spec: &TapSpec,
        existing: Option<Link>,
        outcome: &mut Outcome,
    ) -> Result<Link, String> {
        if existing.as_ref().is_some_and(|l| !l.is_tun) {
            return Err(format!("{} exists and is not a tap: left alone", spec.name));
        }
        match existing {
            Some(link) if link.tun_owner == Some(spec.owner) => Ok(link),
            existing => {
                tun::ensure_persistent_tap(&spec.name, spec.owner).map_err(|e| e.to_string())?;
                outcome.taps_created += usize::from(existing.is_none());
                self.netlink
                    .link_by_name(&spec.name)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{} vanished after creation", spec.name))
            }
        }
    }

    async fn bring_up(&self, spec: &TapSpec, mut link: Link) -> Result<Link, String> {
        let mtu = spec.mtu.filter(|&mtu| mtu != link.mtu);
        if !link.up || mtu.is_some() {
            self.netlink.set_up(&link, mtu).await.map_err(|e| e.to_string())?;
            link.up = true;
            link.mtu = mtu.unwrap_or(link.mtu);
        }
        Ok(link)
    }

    /// Writes the tap's own sysctls once per tap (name and index): they only reset when the
    /// tap is recreated, and then it has a new index.
    pub(super) fn ensure_tap_sysctls(&mut self, spec: &TapSpec, link: &Link, outcome: &mut Outcome) {
        let key = (spec.name.clone(), link.index);
        if self.verified_taps.contains(&key) {
            return;
        }
        let mut verified = true;
        for setting in &spec.sysctls {
            match self.sysctls.ensure(&setting.key, setting.value) {
                Ok(wrote) => outcome.sysctls_written += usize::from(wrote),
                // No IPv6 on the tap: nothing to lock down. Off on the host, it stays off; on
                // the tap alone (an MTU below 1280), it is looked at again at the next full sync.
                Err(e) if setting.is_ipv6() && e.is_missing() => verified &= !self.sysctls.exists("net/ipv6"),
                Err(e) => {
                    outcome.error(e);
                    verified = false;
                }
            }
        }
        if verified {
            self.verified_taps.retain(|(tap, _)| *tap != spec.name);
            self.verified_taps.insert(key);
        }
    }

    pub(super) async fn take_down_guest(&mut self, tap: &str, routes: &[HostRoute], outcome: &mut Outcome) {
        let link = match self.netlink.link_by_name(tap).await {
            Ok(link) => link,
            Err(e) => return outcome.error(e),
        };
        for route in routes {
            match self.netlink.delete_route(&host_route(route.address, link.as_ref().map(|l| l.index))).await
            {
                Ok(()) => outcome.routes_removed += 1,
                Err(e) => outcome.error(e),
            }
            self.delete_proxy(route, outcome).await;
        }
        let Some(link) = link.filter(|l| l.is_tun) else { return self.remove_guest_filter(tap, outcome) };
        if let Err(e) = self.netlink.set_down(link.index, tap).await {
            outcome.error(e);
        }
        self.remove_guest_filter(tap, outcome);
        self.start_deleting(link.index, tap);
    }
}

/// One of vmnetd's /32 or /128 routes, as the kernel matches it for deletion.
fn host_route(address: IpAddr, oif: Option<u32>) -> Route {
    let prefix_len = host_prefix_len(address);
    Route { destination: address, prefix_len, oif, gateway: None, protocol: VMNET_ROUTE_PROTOCOL }
}
