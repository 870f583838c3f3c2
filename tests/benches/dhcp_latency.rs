//! DHCP server answer latency, for the vmnet bench: a client in a guest netns sends DISCOVER
//! and REQUEST on eth0 (relayed to the guest's tap by `tapguest`) and times OFFER and ACK.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
use dhcproto::{Decodable, Encodable};

/// Exchanges `rounds` DISCOVER/OFFER and REQUEST/ACK pairs as `mac` from netns `ns`, device
/// `eth0` (up, no address); returns the OFFER and ACK times in milliseconds.
pub fn measure(ns: &str, mac: [u8; 6], rounds: usize) -> std::io::Result<(Vec<f64>, Vec<f64>)> {
    let ns = ns.to_owned();
    // setns affects only the calling thread: do it in one of our own.
    std::thread::spawn(move || {
        let netns = File::open(format!("/run/netns/{ns}"))?;
        nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::other)?;
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))?;
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::BindToDevice, &"eth0".into())
            .map_err(std::io::Error::other)?;
        socket.set_broadcast(true)?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        let (mut offers, mut acks) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let xid = 0x7600_0000 + round as u32;
            let (offer, took) = exchange(&socket, &request(xid, mac, MessageType::Discover, &[]))?;
            offers.push(took);
            let server = offer.opts().get(dhcproto::v4::OptionCode::ServerIdentifier).cloned();
            let options: Vec<DhcpOption> = [Some(DhcpOption::RequestedIpAddress(offer.yiaddr())), server]
                .into_iter()
                .flatten()
                .collect();
            let (_, took) = exchange(&socket, &request(xid + 1, mac, MessageType::Request, &options))?;
            acks.push(took);
        }
        Ok((offers, acks))
    })
    .join()
    .map_err(|_| std::io::Error::other("the DHCP client thread panicked"))?
}

fn request(xid: u32, mac: [u8; 6], kind: MessageType, options: &[DhcpOption]) -> Message {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut message = Message::new_with_id(xid, unspecified, unspecified, unspecified, unspecified, &mac);
    message.opts_mut().insert(DhcpOption::MessageType(kind));
    for option in options {
        message.opts_mut().insert(option.clone());
    }
    message
}

/// Sends `message` to the broadcast address and waits for the reply with its xid.
fn exchange(socket: &UdpSocket, message: &Message) -> std::io::Result<(Message, f64)> {
    let bytes = message.to_vec().map_err(std::io::Error::other)?;
    let started = Instant::now();
    socket.send_to(&bytes, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))?;
    let mut buffer = [0u8; 1500];
    loop {
        let len = socket.recv(&mut buffer)?;
        if let Ok(reply) = Message::from_bytes(&buffer[..len]) {
            if reply.opcode() == Opcode::BootReply && reply.xid() == message.xid() {
                return Ok((reply, started.elapsed().as_secs_f64() * 1000.0));
            }
        }
    }
}
