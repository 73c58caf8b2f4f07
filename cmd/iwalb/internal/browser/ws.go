package browser

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
)

// wsConn is the smallest RFC 6455 client the DevTools protocol needs: text
// messages over plain ws:// to 127.0.0.1, masking, fragmentation, ping/pong
// and close. It is written here rather than taken from golang.org/x/net so
// that the module's dependency list does not change for a test helper.
type wsConn struct {
	conn net.Conn
	br   *bufio.Reader
	wmu  sync.Mutex // serialises frame writes (callers and pong replies)
}

// maxWSMessage bounds one DevTools message; a page's HTML comes back in one.
const maxWSMessage = 64 << 20

const (
	wsOpContinuation = 0x0
	wsOpText         = 0x1
	wsOpBinary       = 0x2
	wsOpClose        = 0x8
	wsOpPing         = 0x9
	wsOpPong         = 0xA
)

// wsGUID is the fixed value of RFC 6455 section 1.3 for Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// dialWS opens a WebSocket to a ws:// URL (DevTools never uses wss).
func dialWS(ctx context.Context, rawURL string) (*wsConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse websocket url %q: %w", rawURL, err)
	}
	if u.Scheme != "ws" {
		return nil, fmt.Errorf("websocket url %q: only ws:// is supported", rawURL)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("dial devtools %s: %w", u.Host, err)
	}
	// The handshake must not outlive ctx; after it, ctx no longer matters.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	ws, err := handshakeWS(conn, u)
	if !stop() {
		_ = conn.Close()
		return nil, fmt.Errorf("websocket handshake with %s: %w", u.Host, ctx.Err())
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return ws, nil
}

func handshakeWS(conn net.Conn, u *url.URL) (*wsConn, error) {
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("websocket key: %w", err)
	}
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\n" +
		"Host: " + u.Host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, fmt.Errorf("websocket handshake with %s: %w", u.Host, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("websocket handshake with %s: %w", u.Host, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("websocket handshake with %s: status %s", u.Host, resp.Status)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		return nil, fmt.Errorf("websocket handshake with %s: bad Sec-WebSocket-Accept %q", u.Host, got)
	}
	return &wsConn{conn: conn, br: br}, nil
}

// writeFrame sends one masked frame with FIN set.
func (c *wsConn) writeFrame(op byte, payload []byte) error {
	hdr := make([]byte, 0, 14)
	hdr = append(hdr, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, 0x80|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	var mask [4]byte
	if _, err := rand.Read(mask[:]); err != nil {
		return fmt.Errorf("websocket mask: %w", err)
	}
	hdr = append(hdr, mask[:]...)
	buf := make([]byte, len(hdr)+len(payload))
	copy(buf, hdr)
	for i, b := range payload {
		buf[len(hdr)+i] = b ^ mask[i%4]
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(buf)
	return err
}

// WriteText sends one text message.
func (c *wsConn) WriteText(msg []byte) error {
	return c.writeFrame(wsOpText, msg)
}

// ReadMessage returns the next complete data message, answering pings on
// the way. It returns io.EOF when the peer closes the connection.
func (c *wsConn) ReadMessage() ([]byte, error) {
	var msg []byte
	inMessage := false
	for {
		fin, op, payload, err := c.readFrame()
		if err != nil {
			return nil, err
		}
		switch op {
		case wsOpPing:
			if err := c.writeFrame(wsOpPong, payload); err != nil {
				return nil, err
			}
			continue
		case wsOpPong:
			continue
		case wsOpClose:
			_ = c.writeFrame(wsOpClose, nil)
			return nil, io.EOF
		case wsOpText, wsOpBinary:
			if inMessage {
				return nil, errors.New("websocket: new message inside a fragmented one")
			}
			inMessage = true
			msg = payload
		case wsOpContinuation:
			if !inMessage {
				return nil, errors.New("websocket: continuation frame without a message")
			}
			msg = append(msg, payload...)
		default:
			return nil, fmt.Errorf("websocket: unknown opcode %#x", op)
		}
		if len(msg) > maxWSMessage {
			return nil, fmt.Errorf("websocket: message larger than %d bytes", maxWSMessage)
		}
		if fin {
			return msg, nil
		}
	}
}

func (c *wsConn) readFrame() (fin bool, op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return false, 0, nil, err
	}
	fin = h[0]&0x80 != 0
	op = h[0] & 0x0F
	masked := h[1]&0x80 != 0
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(c.br, b[:]); err != nil {
			return false, 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(c.br, b[:]); err != nil {
			return false, 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > maxWSMessage {
		return false, 0, nil, fmt.Errorf("websocket: frame larger than %d bytes", maxWSMessage)
	}
	var mask [4]byte
	if masked { // servers must not mask, but tolerate it
		if _, err = io.ReadFull(c.br, mask[:]); err != nil {
			return false, 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(c.br, payload); err != nil {
		return false, 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return fin, op, payload, nil
}

// Close closes the TCP connection; a pending ReadMessage returns an error.
func (c *wsConn) Close() error {
	return c.conn.Close()
}
