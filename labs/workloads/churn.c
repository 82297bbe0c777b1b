// SPDX-License-Identifier: GPL-2.0
/*
 * churn - create and close files, sockets, both, or pipes, as fast as asked.
 *
 * Kinds (-k), and what one operation ("op") is:
 *
 *   files    one op = open(O_CREAT|O_EXCL|O_WRONLY) a unique name in DIR,
 *            write -w bytes, close, unlink.  With -p each file op also does
 *            pipe() + close() of both ends (counted separately as "pipes").
 *   sockets  one op = one socket's last close.  Steps alternate between
 *            socketpair(AF_UNIX, SOCK_STREAM) + close of both ends (2 ops)
 *            and a TCP connection on 127.0.0.1: connect to a listener of
 *            our own, accept, close both ends (2 ops; the client closes
 *            first with SO_LINGER 0, an RST, so no TIME_WAIT piles up and
 *            no ephemeral ports run out).  Every socket closed is counted,
 *            also one closed after a failed connect; the one listening
 *            socket (closed at exit) is not.  When one op is left to do
 *            under -n, a lone socket(AF_UNIX) is made and closed.
 *   mixed    files and sockets: -m PCT percent of the ops are socket
 *            closes (default 50), interleaved: a socket step (2 ops)
 *            whenever sockets are behind their share, else a file op.
 *   pipes    one op = one pipe made and both its ends closed, pipe() and
 *            pipe2(O_CLOEXEC) in turn: a pipefs inode and its two files
 *            (the same path as -p, as the lab's own kind, counted as ops).
 *
 * Every socket fd comes from sock_alloc_file(): a sockfs dentry with its
 * inode in sock_inode_cache, so a close hook that leaks the path pins one
 * dentry + one sock_inode_cache object per socket op, as a file op pins one
 * dentry + one inode of DIR's file system.
 *
 *   churn [-k KIND] [-d DIR] [-n COUNT] [-t SECONDS] [-r RATE] [-w BYTES] [-c COUNTFILE] [-p]
 *
 *   -k KIND       files (default), sockets, mixed or pipes
 *   -m PCT        with -k mixed: percent of the ops that close a socket (1-99, default 50)
 *   -d DIR        where the files are made (required with -k files or mixed)
 *   -n COUNT      stop after COUNT ops (0 = unlimited, default)
 *   -t SECONDS    stop after this long (fractions allowed; 0 = unlimited)
 *   -r RATE       ops per second (0 = flat out, default).  Paced in batches
 *                 (~100 batches/s) against absolute CLOCK_MONOTONIC deadlines,
 *                 so the average rate does not drift; a late batch is caught
 *                 up by the following ones.
 *   -w BYTES      bytes to write into each file (default 0)
 *   -c COUNTFILE  cumulative op count, "N\n", replaced atomically
 *                 (temp file + rename) at least every 100 ms and at exit
 *   -p            also churn pipes (with file ops; not with -k pipes)
 *
 * At most four descriptors are open at once (the listener, a pair, the
 * count file); every one is closed on every path.  Signals: SIGTERM/SIGINT
 * end the run after the current step; interrupted calls are retried.
 *
 * Exit status: 0 on normal end (count or time reached, SIGTERM/SIGINT),
 * 1 on a runtime error (e.g. ENOSPC, ENOBUFS; the count reached is
 * reported), 2 on a usage error.  Last stdout line:
 *   churn: ops=N seconds=S rate=R/s [files=F sockets=S] [pipes=P]
 * (files= and sockets= with -k sockets or mixed; pipes= with -p or -k pipes).
 *
 * Build: gcc -O2 -static -Wall -Wextra -o churn churn.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define COUNT_INTERVAL_NS	100000000LL	/* count file refresh: 100 ms */
#define BATCHES_PER_SEC		100.0L
#define WBUF_SIZE		65536
#define ACCEPT_TIMEOUT_MS	30000	/* loopback: the connection is queued at once */

enum kind { KIND_FILES, KIND_SOCKETS, KIND_MIXED, KIND_PIPES };

static volatile sig_atomic_t stop_sig;

static const char *count_path;
static char count_tmp[4096];

/* What failed, for the final message: the call and its errno. */
static const char *fail_what;
static int fail_errno;

static void on_signal(int sig)
{
	stop_sig = sig;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [-k files|sockets|mixed|pipes] [-m PCT] [-d DIR] [-n COUNT] [-t SECONDS] [-r RATE] [-w BYTES] [-c COUNTFILE] [-p]\n",
		prog);
	exit(2);
}

static unsigned long long parse_u64(const char *s, char opt)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-') {
		fprintf(stderr, "churn: invalid value for -%c: '%s'\n", opt, s);
		exit(2);
	}
	return v;
}

static double parse_nonneg(const char *s, char opt)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.0) || v > 1e12) {
		fprintf(stderr, "churn: invalid value for -%c: '%s'\n", opt, s);
		exit(2);
	}
	return v;
}

/* Atomically replace the count file.  Returns 0 or an errno value. */
static int write_count(unsigned long long ops)
{
	char buf[32];
	int fd, len, err = 0;
	ssize_t w;

	if (!count_path)
		return 0;
	len = snprintf(buf, sizeof(buf), "%llu\n", ops);
	fd = open(count_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return errno;
	do {
		w = write(fd, buf, len);
	} while (w < 0 && errno == EINTR);
	if (w < 0)
		err = errno;
	else if (w != len)
		err = EIO;
	if (close(fd) < 0 && !err)
		err = errno;
	if (!err && rename(count_tmp, count_path) < 0)
		err = errno;
	if (err)
		unlink(count_tmp);
	return err;
}

static int write_all(int fd, const char *buf, unsigned long long n)
{
	while (n) {
		size_t chunk = n > WBUF_SIZE ? WBUF_SIZE : (size_t)n;
		ssize_t w = write(fd, buf, chunk);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		n -= (unsigned long long)w;
	}
	return 0;
}


static void fail(const char *what)
{
	fail_what = what;
	fail_errno = errno;
}

/* One file op.  Returns 0 or -1 (fail_what set). */
static int file_op(const char *path, const char *wbuf, unsigned long long wbytes)
{
	int fd;

	do {
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		fail("open");
		return -1;
	}
	if (wbytes && write_all(fd, wbuf, wbytes) < 0) {
		fail("write");
		close(fd);
		unlink(path);
		return -1;
	}
	/* Linux frees the descriptor even when close reports EINTR. */
	if (close(fd) < 0 && errno != EINTR) {
		fail("close");
		unlink(path);
		return -1;
	}
	if (unlink(path) < 0) {
		fail("unlink");
		return -1;
	}
	return 0;
}

/* Close a socket: its last close, one op.  The descriptor is gone whatever
 * close returns, so it is counted either way. */
static void close_sock(int fd, unsigned long long *ops)
{
	close(fd);
	(*ops)++;
}

/* The loopback listener the TCP steps connect to; -1 on error. */
static int listen_loopback(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0) {
		fail("socket(AF_INET) for the listener");
		return -1;
	}
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr->sin_port = 0;
	if (bind(fd, (struct sockaddr *)addr, sizeof(*addr)) < 0) {
		fail("bind 127.0.0.1 (is lo up?)");
		close(fd);
		return -1;
	}
	if (listen(fd, 64) < 0) {
		fail("listen");
		close(fd);
		return -1;
	}
	if (getsockname(fd, (struct sockaddr *)addr, &len) < 0) {
		fail("getsockname");
		close(fd);
		return -1;
	}
	return fd;
}

/* connect(), with an interrupted connect waited out.  0 or -1 (errno). */
static int connect_loopback(int fd, const struct sockaddr_in *addr)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int err = 0;
	socklen_t len = sizeof(err);

	if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0)
		return 0;
	if (errno != EINTR && errno != EINPROGRESS)
		return -1;
	/* The connect goes on in the kernel: wait for its result. */
	for (;;) {
		int n = poll(&p, 1, ACCEPT_TIMEOUT_MS);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -1;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

/* accept4() on the non-blocking listener, waiting for the connection to
 * be queued.  The descriptor, or -1 (errno). */
static int accept_loopback(int lfd)
{
	int64_t deadline = now_ns() + (int64_t)ACCEPT_TIMEOUT_MS * 1000000LL;

	for (;;) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		int n;

		if (fd >= 0)
			return fd;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED)
			return -1;
		if (now_ns() >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		n = poll(&p, 1, 100);
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* One TCP connection on loopback: 2 ops, each socket closed counted. */
static int tcp_step(int lfd, const struct sockaddr_in *addr, unsigned long long *ops)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	int c, a;

	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0) {
		fail("socket(AF_INET)");
		return -1;
	}
	/* Close with an RST: no TIME_WAIT, no port held for a minute. */
	if (setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0) {
		fail("setsockopt(SO_LINGER)");
		close_sock(c, ops);
		return -1;
	}
	if (connect_loopback(c, addr) < 0) {
		fail("connect 127.0.0.1");
		close_sock(c, ops);
		return -1;
	}
	a = accept_loopback(lfd);
	if (a < 0) {
		fail("accept");
		close_sock(c, ops);
		return -1;
	}
	close_sock(c, ops);
	close_sock(a, ops);
	return 0;
}

/* socketpair(AF_UNIX) and both ends closed: 2 ops. */
static int pair_step(unsigned long long *ops)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		fail("socketpair(AF_UNIX)");
		return -1;
	}
	close_sock(sv[0], ops);
	close_sock(sv[1], ops);
	return 0;
}

/* One pipe made and both ends closed: 1 op.  Odd steps use pipe(), even
 * ones pipe2(O_CLOEXEC), so both system calls are exercised. */
static int pipe_step(unsigned long long *ops)
{
	int p[2];
	int r = (*ops % 2) ? pipe(p) : pipe2(p, O_CLOEXEC);

	if (r < 0) {
		fail((*ops % 2) ? "pipe" : "pipe2");
		return -1;
	}
	close(p[0]);
	close(p[1]);
	(*ops)++;
	return 0;
}

/* One lone socket, for the last op under -n. */
static int lone_socket_step(unsigned long long *ops)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		fail("socket(AF_UNIX)");
		return -1;
	}
	close_sock(fd, ops);
	return 0;
}

static void refresh_count(unsigned long long ops, int *warned)
{
	int err = write_count(ops);

	if (err && !(*warned)++)
		fprintf(stderr, "churn: warning: count file %s: %s\n",
			count_path, strerror(err));
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	enum kind kind = KIND_FILES;
	int sock_pct = 50;
	unsigned long long max_ops = 0, wbytes = 0, ops = 0, pipes = 0;
	unsigned long long file_ops = 0, sock_ops = 0, sock_steps = 0;
	double secs = 0.0, rate = 0.0;
	int do_pipes = 0, opt, rc = 0, err, lfd = -1;
	char *wbuf = NULL, *path = NULL;
	size_t plen;
	int64_t start, end_ns = 0, next_count, t = 0;
	unsigned long long batch = 1, in_batch = 0;
	struct sigaction sa;
	struct sockaddr_in laddr;
	int count_warned = 0;

	while ((opt = getopt(argc, argv, "k:m:d:n:t:r:w:c:ph")) != -1) {
		switch (opt) {
		case 'm':
			sock_pct = atoi(optarg);
			if (sock_pct < 1 || sock_pct > 99) {
				fprintf(stderr, "churn: invalid value for -m: '%s' (1-99)\n", optarg);
				return 2;
			}
			break;
		case 'k':
			if (!strcmp(optarg, "files"))
				kind = KIND_FILES;
			else if (!strcmp(optarg, "sockets"))
				kind = KIND_SOCKETS;
			else if (!strcmp(optarg, "mixed"))
				kind = KIND_MIXED;
			else if (!strcmp(optarg, "pipes"))
				kind = KIND_PIPES;
			else {
				fprintf(stderr, "churn: invalid value for -k: '%s' (files, sockets, mixed or pipes)\n", optarg);
				exit(2);
			}
			break;
		case 'd': dir = optarg; break;
		case 'n': max_ops = parse_u64(optarg, 'n'); break;
		case 't': secs = parse_nonneg(optarg, 't'); break;
		case 'r': rate = parse_nonneg(optarg, 'r'); break;
		case 'w': wbytes = parse_u64(optarg, 'w'); break;
		case 'c': count_path = optarg; break;
		case 'p': do_pipes = 1; break;
		default: usage(argv[0]);
		}
	}
	if (((kind == KIND_FILES || kind == KIND_MIXED) && !dir) || optind != argc ||
	    (kind == KIND_PIPES && do_pipes))
		usage(argv[0]);

	if (count_path &&
	    snprintf(count_tmp, sizeof(count_tmp), "%s.tmp.%ld", count_path,
		     (long)getpid()) >= (int)sizeof(count_tmp)) {
		fprintf(stderr, "churn: count file path too long\n");
		return 2;
	}

	if (wbytes) {
		wbuf = malloc(WBUF_SIZE);
		if (!wbuf) {
			fprintf(stderr, "churn: out of memory\n");
			return 1;
		}
		memset(wbuf, 'x', WBUF_SIZE);
	}

	plen = (dir ? strlen(dir) : 0) + 96;
	path = malloc(plen);
	if (!path) {
		fprintf(stderr, "churn: out of memory\n");
		free(wbuf);
		return 1;
	}
	path[0] = '\0';

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;	/* clock_nanosleep and poll still return EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (kind == KIND_SOCKETS || kind == KIND_MIXED) {
		lfd = listen_loopback(&laddr);
		if (lfd < 0) {
			fprintf(stderr, "churn: %s: %s\n", fail_what, strerror(fail_errno));
			free(path);
			free(wbuf);
			return 1;
		}
	}

	err = write_count(0);
	if (err) {
		fprintf(stderr, "churn: cannot write count file %s: %s\n",
			count_path, strerror(err));
		if (lfd >= 0)
			close(lfd);
		free(path);
		free(wbuf);
		return 1;
	}

	start = now_ns();
	if (secs > 0)
		end_ns = start + (int64_t)(secs * 1e9);
	next_count = start + COUNT_INTERVAL_NS;
	if (rate > 0) {
		long double b = (long double)rate / BATCHES_PER_SEC;

		batch = b < 1.0L ? 1 : (unsigned long long)b;
	}

	while (!stop_sig && (!max_ops || ops < max_ops)) {
		unsigned long long before = ops;
		int sockets_now = kind == KIND_SOCKETS ||
			(kind == KIND_MIXED && sock_ops * 100 < (file_ops + sock_ops) * (unsigned long long)sock_pct);

		if (kind == KIND_PIPES) {
			if (pipe_step(&ops) < 0)
				break;
			pipes++;
		} else if (!sockets_now) {
			snprintf(path, plen, "%s/churn.%ld.%llx.%llu", dir, (long)getpid(),
				 (unsigned long long)start, file_ops);
			if (file_op(path, wbuf, wbytes) < 0)
				break;
			if (do_pipes) {
				int p[2];

				if (pipe2(p, O_CLOEXEC) < 0) {
					fail("pipe");
					break;
				}
				close(p[0]);
				close(p[1]);
				pipes++;
			}
			ops++;
			file_ops++;
		} else {
			int r;

			if (max_ops && max_ops - ops == 1)
				r = lone_socket_step(&ops);
			else if (sock_steps++ % 2 == 0)
				r = pair_step(&ops);
			else
				r = tcp_step(lfd, &laddr, &ops);
			sock_ops += ops - before;
			if (r < 0)
				break;
		}

		if (max_ops && ops >= max_ops)
			break;
		t = now_ns();
		if (end_ns && t >= end_ns)
			break;

		in_batch += ops - before;
		if (rate > 0 && in_batch >= batch) {
			long double off = (long double)ops * 1e9L / (long double)rate;
			int64_t target = start + (int64_t)off;

			in_batch = 0;
			if (end_ns && target > end_ns)
				target = end_ns;
			/* Keep the count file fresh during long sleeps. */
			while (!stop_sig && target > t) {
				int64_t wake = target < next_count ? target : next_count;
				struct timespec ts = {
					.tv_sec = wake / 1000000000LL,
					.tv_nsec = wake % 1000000000LL,
				};

				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
				t = now_ns();
				if (t >= next_count) {
					refresh_count(ops, &count_warned);
					next_count = t + COUNT_INTERVAL_NS;
				}
			}
			if (end_ns && t >= end_ns)
				break;
		}

		if (t >= next_count) {
			refresh_count(ops, &count_warned);
			next_count = t + COUNT_INTERVAL_NS;
		}
	}

	if (lfd >= 0)
		close(lfd);
	t = now_ns();
	{
		double el = (double)(t - start) / 1e9;

		if (fail_what) {
			if (!strcmp(fail_what, "open") || !strcmp(fail_what, "write") ||
			    !strcmp(fail_what, "close") || !strcmp(fail_what, "unlink"))
				fprintf(stderr, "churn: %s %s failed after %llu ops: %s\n",
					fail_what, path, ops, strerror(fail_errno));
			else
				fprintf(stderr, "churn: %s failed after %llu ops: %s\n",
					fail_what, ops, strerror(fail_errno));
			rc = 1;
		}
		err = write_count(ops);
		if (err) {
			fprintf(stderr, "churn: final count file write %s failed: %s\n",
				count_path, strerror(err));
			rc = 1;
		}
		printf("churn: ops=%llu seconds=%.3f rate=%.1f/s", ops, el,
		       el > 0 ? ops / el : 0.0);
		if (kind == KIND_SOCKETS || kind == KIND_MIXED)
			printf(" files=%llu sockets=%llu", file_ops, sock_ops);
		if (do_pipes || kind == KIND_PIPES)
			printf(" pipes=%llu", pipes);
		printf("\n");
		fflush(stdout);
	}
	free(path);
	free(wbuf);
	return rc;
}
