// SPDX-License-Identifier: GPL-2.0
/*
 * churn - create/close/unlink files (optionally pipes) as fast as asked.
 *
 * One op = open(O_CREAT|O_EXCL|O_WRONLY) a unique name in DIR, write -w bytes,
 * close, unlink.  With -p each op additionally does pipe() + close() of both
 * ends (counted separately as "pipes").
 *
 *   churn -d DIR [-n COUNT] [-t SECONDS] [-r RATE] [-w BYTES] [-c COUNTFILE] [-p]
 *
 *   -n COUNT      stop after COUNT ops (0 = unlimited, default)
 *   -t SECONDS    stop after this long (fractions allowed; 0 = unlimited)
 *   -r RATE       ops per second (0 = flat out, default).  Paced in batches
 *                 (~100 batches/s) against absolute CLOCK_MONOTONIC deadlines,
 *                 so the average rate does not drift; a late batch is caught
 *                 up by the following ones.
 *   -w BYTES      bytes to write into each file (default 0)
 *   -c COUNTFILE  cumulative op count, "N\n", replaced atomically
 *                 (temp file + rename) at least every 100 ms and at exit
 *   -p            also churn pipes
 *
 * Exit status: 0 on normal end (count or time reached, SIGTERM/SIGINT),
 * 1 on a runtime error (e.g. ENOSPC; the count reached is reported),
 * 2 on a usage error.  Last stdout line:
 *   churn: ops=N seconds=S rate=R/s [pipes=P]
 *
 * Build: gcc -O2 -static -Wall -Wextra -o churn churn.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COUNT_INTERVAL_NS	100000000LL	/* count file refresh: 100 ms */
#define BATCHES_PER_SEC		100.0L
#define WBUF_SIZE		65536

static volatile sig_atomic_t stop_sig;

static const char *count_path;
static char count_tmp[4096];

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
		"usage: %s -d DIR [-n COUNT] [-t SECONDS] [-r RATE] [-w BYTES] [-c COUNTFILE] [-p]\n",
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

int main(int argc, char **argv)
{
	const char *dir = NULL;
	unsigned long long max_ops = 0, wbytes = 0, ops = 0, pipes = 0;
	double secs = 0.0, rate = 0.0;
	int do_pipes = 0, opt, rc = 0, err;
	char *wbuf = NULL, *path;
	size_t plen;
	int64_t start, end_ns = 0, next_count, t = 0;
	unsigned long long batch = 1, in_batch = 0;
	struct sigaction sa;
	const char *fail_what = NULL;
	int fail_errno = 0;
	int count_warned = 0;

	while ((opt = getopt(argc, argv, "d:n:t:r:w:c:ph")) != -1) {
		switch (opt) {
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
	if (!dir || optind != argc)
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

	plen = strlen(dir) + 96;
	path = malloc(plen);
	if (!path) {
		fprintf(stderr, "churn: out of memory\n");
		return 1;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;	/* clock_nanosleep still returns EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	err = write_count(0);
	if (err) {
		fprintf(stderr, "churn: cannot write count file %s: %s\n",
			count_path, strerror(err));
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
		int fd;

		snprintf(path, plen, "%s/churn.%ld.%llx.%llu", dir, (long)getpid(),
			 (unsigned long long)start, ops);
		do {
			fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		} while (fd < 0 && errno == EINTR);
		if (fd < 0) {
			fail_what = "open";
			fail_errno = errno;
			break;
		}
		if (wbytes && write_all(fd, wbuf, wbytes) < 0) {
			fail_what = "write";
			fail_errno = errno;
			close(fd);
			unlink(path);
			break;
		}
		if (close(fd) < 0 && errno != EINTR) {
			fail_what = "close";
			fail_errno = errno;
			unlink(path);
			break;
		}
		if (unlink(path) < 0) {
			fail_what = "unlink";
			fail_errno = errno;
			break;
		}
		if (do_pipes) {
			int p[2];

			if (pipe2(p, O_CLOEXEC) < 0) {
				fail_what = "pipe";
				fail_errno = errno;
				break;
			}
			close(p[0]);
			close(p[1]);
			pipes++;
		}
		ops++;

		if (max_ops && ops >= max_ops)
			break;
		t = now_ns();
		if (end_ns && t >= end_ns)
			break;

		if (rate > 0 && ++in_batch >= batch) {
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
					err = write_count(ops);
					if (err && !count_warned++)
						fprintf(stderr, "churn: warning: count file %s: %s\n",
							count_path, strerror(err));
					next_count = t + COUNT_INTERVAL_NS;
				}
			}
			if (end_ns && t >= end_ns)
				break;
		}

		if (t >= next_count) {
			err = write_count(ops);
			if (err && !count_warned++)
				fprintf(stderr, "churn: warning: count file %s: %s\n",
					count_path, strerror(err));
			next_count = t + COUNT_INTERVAL_NS;
		}
	}

	t = now_ns();
	{
		double el = (double)(t - start) / 1e9;

		if (fail_what) {
			if (do_pipes && !strcmp(fail_what, "pipe"))
				fprintf(stderr, "churn: pipe failed after %llu ops: %s\n",
					ops, strerror(fail_errno));
			else
				fprintf(stderr, "churn: %s %s failed after %llu ops: %s\n",
					fail_what, path, ops, strerror(fail_errno));
			rc = 1;
		}
		err = write_count(ops);
		if (err) {
			fprintf(stderr, "churn: final count file write %s failed: %s\n",
				count_path, strerror(err));
			rc = 1;
		}
		if (do_pipes)
			printf("churn: ops=%llu seconds=%.3f rate=%.1f/s pipes=%llu\n",
			       ops, el, el > 0 ? ops / el : 0.0, pipes);
		else
			printf("churn: ops=%llu seconds=%.3f rate=%.1f/s\n",
			       ops, el, el > 0 ? ops / el : 0.0);
		fflush(stdout);
	}
	free(path);
	free(wbuf);
	return rc;
}
