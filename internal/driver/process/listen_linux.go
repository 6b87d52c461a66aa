package process

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// listenTableSupported: Linux can say whether a port listens without a
// connect, through the socket table (sock_diag netlink, as ss(8) reads it).
const listenTableSupported = true

const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	tcpListen        = 10 // TCP_LISTEN, a state in the kernel's numbering
	inetDiagReqLen   = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	// listenDumpMax bounds the reply read: listening TCP sockets on a
	// host are few, and each is one 72-byte message (plus header).
	listenDumpMax = 4 << 20
)

// listening reports whether a TCP socket listens on port, bound to host's
// address or to the unspecified one (0.0.0.0, ::), according to the
// kernel's socket table. Unlike a connect it does not touch the instance:
// nothing is accepted, logged or closed on its side, so it can be asked
// often while the instance starts. It is one netlink dump per family of
// the LISTEN sockets only (the kernel walks its listening hash, not the
// established connections), a few tens of microseconds. An error means the
// table cannot be read here (netlink refused in a sandbox, say): the
// caller falls back to a connect.
func listening(host string, port int) (bool, error) {
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false, fmt.Errorf("process: listen check: host %q: %w", host, err)
	}
	addr = addr.Unmap()
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.NETLINK_INET_DIAG)
	if err != nil {
		return false, fmt.Errorf("process: listen check: netlink socket: %w", err)
	}
	defer syscall.Close(fd)
	for _, family := range []uint8{syscall.AF_INET, syscall.AF_INET6} {
		ok, err := listeningFamily(fd, family, addr, port)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// listeningFamily dumps family's LISTEN sockets over the netlink socket fd
// (one dump at a time, each read to its end).
func listeningFamily(fd int, family uint8, host netip.Addr, port int) (bool, error) {
	req := make([]byte, syscall.NLMSG_HDRLEN+inetDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], sockDiagByFamily)
	ne.PutUint16(req[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence number
	body := req[syscall.NLMSG_HDRLEN:]
	body[0] = family
	body[1] = syscall.IPPROTO_TCP
	ne.PutUint32(body[4:], 1<<tcpListen) // idiag_states: LISTEN only
	if err := syscall.Sendto(fd, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("process: listen check: netlink send: %w", err)
	}

	buf := make([]byte, 32<<10)
	found := false
	for read := 0; read < listenDumpMax; {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return false, fmt.Errorf("process: listen check: netlink receive: %w", err)
		}
		read += n
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return false, fmt.Errorf("process: listen check: netlink reply: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case syscall.NLMSG_DONE:
				return found, nil
			case syscall.NLMSG_ERROR:
				code := int32(0)
				if len(m.Data) >= 4 {
					code = int32(ne.Uint32(m.Data))
				}
				return false, fmt.Errorf("process: listen check: netlink: %w", syscall.Errno(-code))
			case sockDiagByFamily:
				if !found && listensOn(m.Data, family, host, port) {
					found = true // read on to DONE, so the socket ends clean
				}
			}
		}
	}
	return false, errors.New("process: listen check: socket table larger than the read bound")
}

// listensOn reports whether the inet_diag_msg in b is a socket on port,
// bound to host or to the unspecified address of its family.
func listensOn(b []byte, family uint8, host netip.Addr, port int) bool {
	if len(b) < inetDiagMsgLen {
		return false
	}
	// inet_diag_msg: family, state, timer, retrans (1 byte each), then
	// inet_diag_sockid: sport, dport (big endian), src, dst (16 bytes each).
	if int(binary.BigEndian.Uint16(b[4:6])) != port {
		return false
	}
	var src netip.Addr
	if family == syscall.AF_INET {
		src = netip.AddrFrom4([4]byte(b[8:12]))
	} else {
		src = netip.AddrFrom16([16]byte(b[8:24])).Unmap()
	}
	return src.IsUnspecified() || src == host
}
