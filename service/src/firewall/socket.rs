//! The nf_tables netlink socket: sends a batch and collects the kernel's answers, dumps the
//! counters. Every message read is walked with bounds checks before libnftnl parses it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use nftnl::FinalizedBatch;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use super::counter::{self, Count};
use super::ruleset::Family;

const NLMSG_HEADER: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWOBJ`.
const NEWOBJ: u16 = (10 << 8) | 18;
const RECEIVE_BUFFER: usize = 1 << 20;

pub struct NfSocket {
    socket: Socket,
    /// Sequence numbers of dump requests (batches number their own from 1).
    seq: u32,
}

/// What one read of the socket holds.
enum Answer {
    /// An acknowledgement (error 0) or an error, for a message's sequence number.
    Ack {
        seq: u32,
        errno: i32,
    },
    Done,
    Counter(String, Count),
    Other,
}

impl NfSocket {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        // Errors echo only the header of the message that failed, not the whole batch.
        socket.set_cap_ack(true)?;
        // SAFETY: the descriptor belongs to `socket`, which outlives this borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
        // Room for the answers to a batch of thousands of elements (CAP_NET_ADMIN may exceed
        // rmem_max); a stuck kernel cannot block vmnetd for more than 2 s.
        setsockopt(&fd, sockopt::RcvBufForce, &RECEIVE_BUFFER).map_err(io::Error::from)?;
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(2, 0)).map_err(io::Error::from)?;
        Ok(Self { socket, seq: 1 << 31 })
    }

    /// Sends `batch` in one message and waits for the kernel's verdict on all of it: the
    /// kernel applies all or nothing. Returns the first error it gave.
    pub fn apply(&mut self, batch: &FinalizedBatch) -> io::Result<()> {
        let message: Vec<u8> = batch.iter().flatten().copied().collect();
        // SAFETY: as in `open`.
        let fd = unsafe { BorrowedFd::borrow_raw(self.socket.as_raw_fd()) };
        // A batch is one message: the send buffer must hold all of it.
        setsockopt(&fd, sockopt::SndBufForce, &(message.len() * 2 + 4096)).map_err(io::Error::from)?;
        self.socket.send(&message, 0)?;
        let mut waiting: Vec<u32> = batch.sequence_numbers().collect();
        while !waiting.is_empty() {
            for answer in self.receive(0)? {
                if let Answer::Ack { seq, errno } = answer {
                    waiting.retain(|s| *s != seq);
                    if errno != 0 {
                        // A failed batch is not acknowledged to its end: what else the kernel
                        // said is in the buffer already.
                        while self.receive(libc::MSG_DONTWAIT).is_ok_and(|more| !more.is_empty()) {}
                        return Err(io::Error::from_raw_os_error(errno));
                    }
                }
            }
        }
        Ok(())
    }

    /// The named counters of vmnetd's table of `family`; none without the table.
    pub fn counters(&mut self, family: Family) -> io::Result<Vec<(String, Count)>> {
        self.seq = self.seq.wrapping_add(1);
        self.socket.send(&counter::counters_request(family, self.seq), 0)?;
        let mut counters = Vec::new();
        loop {
            for answer in self.receive(0)? {
                match answer {
                    Answer::Counter(name, count) => counters.push((name, count)),
                    Answer::Done => return Ok(counters),
                    Answer::Ack { errno, .. } if errno == libc::ENOENT => return Ok(Vec::new()),
                    Answer::Ack { errno, .. } if errno != 0 => {
                        return Err(io::Error::from_raw_os_error(errno))
                    }
                    _ => {}
                }
            }
        }
    }

    fn receive(&mut self, flags: libc::c_int) -> io::Result<Vec<Answer>> {
        let mut buffer = vec![0u8; 64 * 1024];
        let len = self.socket.recv(&mut &mut buffer[..], flags)?;
        buffer.truncate(len);
        Ok(answers(&buffer))
    }
}

/// Splits a datagram into netlink messages, bounds-checked; a malformed tail is dropped.
fn answers(mut datagram: &[u8]) -> Vec<Answer> {
    let mut found = Vec::new();
    while datagram.len() >= NLMSG_HEADER {
        let len = u32::from_ne_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]) as usize;
        if len < NLMSG_HEADER || len > datagram.len() {
            break;
        }
        let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
        let seq = u32::from_ne_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
        let message = &datagram[..len];
        found.push(match kind {
            NLMSG_ERROR if len >= NLMSG_HEADER + 4 => {
                let code = i32::from_ne_bytes([message[16], message[17], message[18], message[19]]);
                Answer::Ack { seq, errno: code.checked_neg().unwrap_or(libc::EINVAL) }
            }
            NLMSG_DONE => Answer::Done,
            NEWOBJ => match counter::parse_counter(message) {
                Some((name, count)) => Answer::Counter(name, count),
                None => Answer::Other,
            },
            _ => Answer::Other,
        });
        // Messages are aligned to 4 bytes.
        let next = len.div_ceil(4) * 4;
        datagram = datagram.get(next..).unwrap_or_default();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = ((NLMSG_HEADER + payload.len()) as u32).to_ne_bytes().to_vec();
        bytes.extend(kind.to_ne_bytes());
        bytes.extend(0u16.to_ne_bytes());
        bytes.extend(seq.to_ne_bytes());
        bytes.extend(0u32.to_ne_bytes());
        bytes.extend(payload);
        bytes
    }

    #[test]
    fn acks_errors_and_truncated_messages() {
        let mut datagram = message(NLMSG_ERROR, 7, &0i32.to_ne_bytes());
        datagram.extend(message(NLMSG_ERROR, 8, &(-libc::EEXIST).to_ne_bytes()));
        datagram.extend(message(NLMSG_DONE, 9, &[0; 4]));
        datagram.extend(&message(NLMSG_ERROR, 10, &[0; 8])[..12]); // cut short
        let found = answers(&datagram);
        assert_eq!(found.len(), 3);
        assert!(matches!(found[0], Answer::Ack { seq: 7, errno: 0 }));
        assert!(matches!(found[1], Answer::Ack { seq: 8, errno } if errno == libc::EEXIST));
        assert!(matches!(found[2], Answer::Done));
        // A length beyond the datagram, or shorter than a header, ends the walk.
        let mut bad = message(NLMSG_ERROR, 1, &[0; 4]);
        bad[0] = 200;
        assert!(answers(&bad).is_empty());
        bad[0] = 3;
        assert!(answers(&bad).is_empty());
        // An error message too short for its code is no answer.
        assert!(matches!(answers(&message(NLMSG_ERROR, 1, &[]))[..], [Answer::Other]));
    }
}
