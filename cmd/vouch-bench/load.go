package main

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/vouch-mail/vouch/milter/answer"
	"github.com/vouch-mail/vouch/milter/socket"
)

// Load is what one run sends.
type Load struct {
	Sessions    []Session
	Concurrency int
	// Duration or Count ends the run (Count wins when both are set).
	Duration time.Duration
	Count    int
	// Messages per SMTP session, each a transaction ended by Abort.
	Messages int
	// Timeout bounds each milter read and write, as Postfix's
	// milter_command_timeout does.
	Timeout time.Duration
	// Rate, if positive, starts sessions at this many a second (at most
	// Concurrency at once) instead of each as soon as a worker is free;
	// a session's latency then counts from when it was due, so a server
	// that falls behind shows it.
	Rate float64
}

// Postfix's mail headers are sent one field a packet; these are a typical
// small message's.
var headerFields = [][2]string{
	{"Received", "from mx.example (mx.example [192.0.2.1]) by mx.vouch.test (Postfix) with ESMTPS id 4Q1xYz0abc for <user@vouch.test>; Mon, 3 Jun 2024 10:00:00 +0000"},
	{"From", "Alice <alice@example.com>"},
	{"To", "user@vouch.test"},
	{"Subject", "Quarterly report"},
	{"Date", "Mon, 3 Jun 2024 10:00:00 +0000"},
	{"Message-ID", "<20240603100000.1234@example.com>"},
	{"MIME-Version", "1.0"},
	{"Content-Type", "text/plain; charset=utf-8"},
}

// mtaName is the j macro: the MTA's own name, vouch's authserv-id.
const mtaName = "mx.vouch.test"

// sample is what one run measured, with the raw latencies so that rounds
// can be pooled.
type sample struct {
	elapsed   time.Duration
	cpu       time.Duration // this process's CPU time over the run
	serverCPU time.Duration // the server process's, when it is a child (else 0)
	sessions  int           // completed without a protocol error
	messages  int
	errors    int
	sessLat   []time.Duration
	rcptLat   []time.Duration
	verdicts  map[string]int
	errText   map[string]int
}

func newSample() *sample {
	return &sample{verdicts: map[string]int{}, errText: map[string]int{}}
}

func (s *sample) merge(o *sample) {
	s.sessions += o.sessions
	s.messages += o.messages
	s.errors += o.errors
	s.sessLat = append(s.sessLat, o.sessLat...)
	s.rcptLat = append(s.rcptLat, o.rcptLat...)
	for k, v := range o.verdicts {
		s.verdicts[k] += v
	}
	for k, v := range o.errText {
		s.errText[k] += v
	}
}

// Run sends l to the milter at a and measures it. ctx ends it early.
func Run(ctx context.Context, a socket.Address, l Load) *sample {
	if l.Concurrency < 1 {
		l.Concurrency = 1
	}
	if l.Messages < 1 {
		l.Messages = 1
	}
	if l.Timeout <= 0 {
		l.Timeout = 30 * time.Second
	}
	client := gomilter.NewClientWithOptions(a.Network, a.Address, gomilter.ClientOptions{
		Dialer:       &net.Dialer{Timeout: l.Timeout},
		ReadTimeout:  l.Timeout,
		WriteTimeout: l.Timeout,
		// Protocol version 2 actions, as Postfix offers them.
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
	})

	var next atomic.Int64
	total := newSample()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start, cpu := time.Now(), cpuTime()
	deadline := start.Add(l.Duration)
	for range l.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newSample()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				due := time.Now()
				if l.Rate > 0 {
					due = start.Add(time.Duration(float64(i) / l.Rate * float64(time.Second)))
				}
				if l.Count > 0 && i >= l.Count || l.Count <= 0 && due.After(deadline) {
					break
				}
				if wait := time.Until(due); wait > 0 {
					sleep(ctx, wait)
				}
				runSession(client, l.Sessions[i%len(l.Sessions)], i, l.Messages, due, w)
			}
			mu.Lock()
			total.merge(w)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.elapsed, total.cpu = time.Since(start), cpuTime()-cpu
	return total
}

// cpuTime is the CPU time (user and system) this process has used. With an
// in-process server, CPU per session counts client and server together; on
// a shared machine it is steadier than sessions per second, which depend
// on how much of the machine other jobs leave.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runSession is one SMTP session as Postfix drives its milter: a new
// connection, macros before each stage, every transaction ended by Abort,
// then Quit.
func runSession(client *gomilter.Client, s Session, n, messages int, start time.Time, w *sample) {
	fail := func(stage string, err error) {
		w.errors++
		// Keep the text bounded: addresses and ports vary per session.
		msg := stage + ": " + err.Error()
		if len(w.errText) < 20 {
			w.errText[msg]++
		} else {
			w.errText[stage+": (more)"]++
		}
	}
	cs, err := client.Session()
	if err != nil {
		fail("negotiate", err)
		return
	}
	defer func() {
		if cs != nil {
			cs.Close()
		}
	}()
	ip := s.IP.String()
	// Postfix names an unverified client "[ip]" and its _ macro
	// "unknown [ip]".
	if err := cs.Macros(gomilter.CodeConn, "j", mtaName, "{daemon_name}", "smtpd", "_", "unknown ["+ip+"]"); err != nil {
		fail("connect", err)
		return
	}
	act, err := cs.Conn("["+ip+"]", clientFamily(s.IP), uint16(40000+n%20000), ip)
	if err != nil {
		fail("connect", err)
		return
	}
	// A refusal at connect or HELO answers every message of the session.
	refused := ""
	if act.Code != gomilter.ActContinue {
		refused = answer.Code(act)
	} else if act, err = cs.Helo(s.HELO); err != nil {
		fail("helo", err)
		return
	} else if act.Code != gomilter.ActContinue {
		refused = answer.Code(act)
	}
	msgs := 0
	for m := range messages {
		if refused != "" {
			w.verdicts[refused]++
			msgs++
			continue
		}
		v, rcptLat, stage, err := transaction(cs, s, n, m)
		if err != nil {
			fail(stage, err)
			return
		}
		if rcptLat > 0 {
			w.rcptLat = append(w.rcptLat, rcptLat)
		}
		w.verdicts[v]++
		msgs++
	}
	if err := cs.Close(); err != nil {
		cs = nil
		fail("quit", err)
		return
	}
	cs = nil
	w.sessions++
	w.messages += msgs
	w.sessLat = append(w.sessLat, time.Since(start))
}

// transaction sends one message and returns the verdict that ended it and
// how long the RCPT answer took (0 if RCPT was not reached).
func transaction(cs *gomilter.ClientSession, s Session, n, m int) (v string, rcptLat time.Duration, stage string, err error) {
	qid := "B" + strconv.Itoa(n) + "M" + strconv.Itoa(m)
	defer func() {
		if err == nil {
			if aerr := cs.Abort(); aerr != nil {
				stage, err = "abort", aerr
			}
		}
	}()
	if err := cs.Macros(gomilter.CodeMail, "i", qid, "{auth_type}", "", "{auth_authen}", "", "{mail_addr}", s.Sender); err != nil {
		return "", 0, "mail", err
	}
	act, err := cs.Mail(s.Sender, nil)
	if err != nil {
		return "", 0, "mail", err
	}
	if act.Code != gomilter.ActContinue {
		return answer.Code(act), 0, "", nil
	}
	t := time.Now()
	if err := cs.Macros(gomilter.CodeRcpt, "i", qid, "{rcpt_addr}", s.Rcpt); err != nil {
		return "", 0, "rcpt", err
	}
	act, err = cs.Rcpt(s.Rcpt, nil)
	if err != nil {
		return "", 0, "rcpt", err
	}
	rcptLat = time.Since(t)
	if act.Code != gomilter.ActContinue {
		return answer.Code(act), rcptLat, "", nil
	}
	for _, f := range headerFields {
		act, err = cs.HeaderField(f[0], f[1])
		if err != nil {
			return "", rcptLat, "header", err
		}
		if act.Code != gomilter.ActContinue {
			return answer.Code(act), rcptLat, "", nil
		}
	}
	if act, err = cs.HeaderEnd(); err != nil {
		return "", rcptLat, "eoh", err
	}
	if act.Code != gomilter.ActContinue {
		return answer.Code(act), rcptLat, "", nil
	}
	if err := cs.Macros(gomilter.CodeEOB, "i", qid); err != nil {
		return "", rcptLat, "eom", err
	}
	_, act, err = cs.End()
	if err != nil {
		return "", rcptLat, "eom", err
	}
	return answer.Code(act), rcptLat, "", nil
}

// clientFamily is the milter protocol family of ip.
func clientFamily(ip netip.Addr) gomilter.ProtoFamily {
	if ip.Is6() {
		return gomilter.FamilyInet6
	}
	return gomilter.FamilyInet
}
