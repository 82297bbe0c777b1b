// SPDX-License-Identifier: GPL-2.0
/*
 * kernlab-sampler - the guest side of kernlab's sampling: one long-lived
 * process per run that answers sample requests with records, over a
 * virtio-serial port when the VM has one (-p) or on stdin and stdout.
 *
 * Why a process of its own: a sample taken by a fresh SSH session and a
 * shell opens ~150 files (each cache's shrink file, the /proc files) and
 * makes a session's sockets, and a reclaim then frees their dentries,
 * inodes and LSM blobs for the next sample to make again.  The instrument
 * moved what it measured (filp, kmalloc-*, dentry, lsm_inode_cache).  This
 * program opens every file it needs once, at start, and per sample only
 * writes and reads them at offset 0 (pwrite/pread) into buffers it
 * allocated at start.  Why a port: requests and records over SSH are TCP
 * segments in the guest, a few skbuffs in flight at every read; a
 * virtio-serial port's buffers are the driver's own, allocated once.
 *
 *   kernlab-sampler [-r] [-s] [-q MS] [-w PIDFILE] [-o OPSFILE] [-p PORT] SECTION...
 *
 *   -r          reclaim: sync, then write 2 to /proc/sys/vm/drop_caches
 *   -s          flush every cache's per-CPU slabs (write 1 to each
 *               /sys/kernel/slab/<cache>/shrink; aliases, which are
 *               symlinks to a cache's directory, are skipped)
 *   -q MS       with the workload paused, wait MS milliseconds first
 *               (at least SETTLE_MS, 50: the workload's last frees wait
 *               for an RCU grace period, and a read right after the pause
 *               would count them or not by chance; an exec sample's shell
 *               took longer than that between its pause and its read)
 *   -w PIDFILE  pause the workload around the flush and the read: SIGSTOP
 *               to the process group whose leader's pid is in PIDFILE
 *               (read until it names one), SIGCONT after the read
 *   -o OPSFILE  the operation count file for the `ops` section (default
 *               /run/kernlab-ops); replaced by rename, so it is reopened
 *               only when stat() shows another inode
 *   -p PORT     take requests and write records on the virtio-serial port
 *               named PORT (/dev/virtio-ports/PORT, else the /dev/vportNpM
 *               whose /sys/class/virtio-ports/vportNpM/name is PORT); when
 *               there is none, stdin and stdout as without -p
 *   SECTION     uptime, slabinfo, meminfo, dentry-state or ops, in order
 *
 * Protocol.  At start, after opening everything: one line on stdout
 *   @@kernlab-ready pid=P shrink=N transport=T [port=WHY]
 * T is `port` when requests and records go over the port, `stdio` when
 * over stdin and stdout; with -p and no port, WHY says why (one word).
 * Then per request line `s SEQ`: the pause, reclaim and flush, the reads,
 * the resume, then one record in one write() (a port takes at most 32 KiB
 * a write: as few as it takes): for each section a line `@@kernlab-section NAME` and
 * the file's text (an absent ops file reads "0"; a failed read leaves the
 * section empty, which the host reports against it), then the line
 *   @@kernlab-end SEQ
 * End of stdin (the host closed the channel) ends the program, over a port
 * too (stdin is then only watched); so does the host closing the port
 * after it was served once (before, the host side may not be open yet:
 * the sampler waits).  Its pid is written to /run/kernlab-sampler.pid.
 *
 * Build: gcc -O2 -static -Wall -Wextra -o kernlab-sampler sampler.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define OUT_SIZE	(4 << 20)	/* one record; slabinfo is ~30 KiB */
#define MAX_SHRINK	1024
#define MAX_SECTIONS	8
#define SETTLE_MS	50	/* the least wait with the workload paused */

enum section { S_UPTIME, S_SLABINFO, S_MEMINFO, S_DENTRY, S_OPS };

static const char *const names[] = { "uptime", "slabinfo", "meminfo", "dentry-state", "ops" };
static const char *const paths[] = { "/proc/uptime", "/proc/slabinfo", "/proc/meminfo", "/proc/sys/fs/dentry-state", NULL };

static char out[OUT_SIZE];
static size_t out_len;
static int shrink_fds[MAX_SHRINK];
static int n_shrink;
static int fds[MAX_SECTIONS];
static enum section order[MAX_SECTIONS];
static int n_sections;
static const char *ops_path = "/run/kernlab-ops";
static int ops_fd = -1;
static const char *pid_path;
static pid_t pgid;
static int drop_fd = -1;
static int port_fd = -1;

static void put(const char *s, size_t n)
{
	if (n > OUT_SIZE - out_len)
		n = OUT_SIZE - out_len;
	memcpy(out + out_len, s, n);
	out_len += n;
}

static void puts_(const char *s)
{
	put(s, strlen(s));
}

/*
 * The port is non-blocking (a read must not wait for a host that is not
 * there): a full port waits here, 10 s at most, and a closed one fails.
 */
static int write_all(int fd, const char *buf, size_t n)
{
	while (n) {
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd p = { fd, POLLOUT, 0 };

			if (poll(&p, 1, 10000) <= 0 || (p.revents & (POLLHUP | POLLERR)))
				return -1;
			continue;
		}
		if (w <= 0)
			return -1;
		buf += w;
		n -= w;
	}
	return 0;
}

/*
 * Appends the file behind fd from offset 0.  seq_file restarts at offset
 * 0, so a kept descriptor reads the file afresh each time; a sysctl
 * (dentry-state) allocates a buffer of the requested size per read, hence
 * one small read for it.
 */
static void read_into(int fd, int once)
{
	off_t off = 0;

	for (;;) {
		size_t room = OUT_SIZE - out_len;
		ssize_t r;

		if (room == 0)
			return;
		if (once && room > 256)
			room = 256;
		r = pread(fd, out + out_len, room, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		out_len += r;
		off += r;
		if (once)
			return;
	}
}

/* The ops section: the count file, reopened only when it was replaced. */
static void read_ops(void)
{
	struct stat now, held;

	if (stat(ops_path, &now) < 0) {
		puts_("0\n");
		return;
	}
	if (ops_fd >= 0 && (fstat(ops_fd, &held) < 0 || held.st_ino != now.st_ino || held.st_dev != now.st_dev)) {
		close(ops_fd);
		ops_fd = -1;
	}
	if (ops_fd < 0)
		ops_fd = open(ops_path, O_RDONLY | O_CLOEXEC);
	if (ops_fd < 0) {
		puts_("0\n");
		return;
	}
	read_into(ops_fd, 0);
}

/* The workload's process group, once its launcher has written the pid. */
static pid_t workload_pgid(void)
{
	char buf[32];
	ssize_t r;
	int fd;

	if (pgid > 0 || !pid_path)
		return pgid;
	fd = open(pid_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r > 0) {
		buf[r] = 0;
		pgid = (pid_t)atoi(buf);
	}
	return pgid;
}

static void open_shrink(void)
{
	DIR *d = opendir("/sys/kernel/slab");
	struct dirent *e;
	char path[512];

	if (!d)
		return;
	while ((e = readdir(d)) && n_shrink < MAX_SHRINK) {
		struct stat st;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/slab/%s", e->d_name);
		if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/slab/%s/shrink", e->d_name);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0)
			shrink_fds[n_shrink++] = fd;
	}
	closedir(d);
}

static void sample(const char *seq, int reclaim, int quiesce_ms, int out_fd)
{
	pid_t w = workload_pgid();
	int stopped = 0, i;

	out_len = 0;
	if (w > 0 && kill(-w, SIGSTOP) == 0)
		stopped = 1;
	if (stopped) {
		int ms = quiesce_ms > SETTLE_MS ? quiesce_ms : SETTLE_MS;
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

		/* synchronize_rcu() in the kernel when the guest has CPUs to wait for. */
		(void)!syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	if (reclaim && drop_fd >= 0) {
		sync();
		(void)!pwrite(drop_fd, "2\n", 2, 0);
	}
	for (i = 0; i < n_shrink; i++)
		(void)!pwrite(shrink_fds[i], "1\n", 2, 0);
	for (i = 0; i < n_sections; i++) {
		puts_("@@kernlab-section ");
		puts_(names[order[i]]);
		puts_("\n");
		if (order[i] == S_OPS)
			read_ops();
		else if (fds[i] >= 0)
			read_into(fds[i], order[i] == S_DENTRY);
		if (out_len && out[out_len - 1] != '\n')
			puts_("\n");
	}
	if (stopped)
		kill(-w, SIGCONT);
	puts_("@@kernlab-end ");
	puts_(seq);
	puts_("\n");
	if (write_all(out_fd, out, out_len) < 0)
		exit(0);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * A sampler that holds the port (one left by a broken stream, whose
 * host end the host already closed) is ended: the port opens once.
 */
static void end_previous(void)
{
	char buf[64];
	ssize_t r;
	pid_t pid;
	int fd = open("/run/kernlab-sampler.pid", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return;
	buf[r] = 0;
	pid = (pid_t)atoi(buf);
	if (pid <= 1 || pid == getpid())
		return;
	snprintf(buf, sizeof(buf), "/proc/%d/comm", (int)pid);
	fd = open(buf, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r > 0 && !strncmp(buf, "kernlab-sampler", 15))
		kill(pid, SIGKILL);
}

/* The port named `name`, opened; -1 with a one-word reason in `why`. */
static int open_port(const char *name, char *why, size_t n)
{
	char path[320], buf[320];
	DIR *d;
	struct dirent *e;
	int fd, tries;

	snprintf(path, sizeof(path), "/dev/virtio-ports/%s", name);
	if (access(path, F_OK) < 0) {
		path[0] = 0;
		d = opendir("/sys/class/virtio-ports");
		if (!d) {
			snprintf(why, n, "no-virtio-ports");
			return -1;
		}
		while ((e = readdir(d))) {
			ssize_t r;

			if (e->d_name[0] == '.')
				continue;
			snprintf(buf, sizeof(buf), "/sys/class/virtio-ports/%s/name", e->d_name);
			fd = open(buf, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			r = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (r <= 0)
				continue;
			buf[r] = 0;
			buf[strcspn(buf, "\n")] = 0;
			if (!strcmp(buf, name)) {
				snprintf(path, sizeof(path), "/dev/%s", e->d_name);
				break;
			}
		}
		closedir(d);
		if (!path[0]) {
			snprintf(why, n, "no-port-named-%s", name);
			return -1;
		}
	}
	for (tries = 0;; tries++) {
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno == EBUSY && tries < 100) {
			if (tries == 0)
				end_previous();
			sleep_ms(20);
			continue;
		}
		snprintf(why, n, "open-%s-errno-%d", path, errno);
		return -1;
	}
}

/* Request lines in `line` (`have` bytes): `s SEQ` is answered on out_fd. */
static size_t take_requests(char *line, size_t have, size_t size, int reclaim, int quiesce_ms, int out_fd)
{
	char *nl;

	line[have] = 0;
	while ((nl = memchr(line, '\n', have))) {
		*nl = 0;
		if (line[0] == 's' && line[1] == ' ')
			sample(line + 2, reclaim, quiesce_ms, out_fd);
		have -= nl + 1 - line;
		memmove(line, nl + 1, have);
	}
	if (have == size - 1)
		have = 0;	/* a line too long to be a request */
	return have;
}

/*
 * Requests and records on the port; stdin only watched for its end.  A
 * port whose host side is not open reads as end of file (and polls as
 * POLLHUP): before the first request that is a host not yet connected,
 * after it the host gone.
 */
static int serve_port(int reclaim, int quiesce_ms)
{
	char line[128], junk[256];
	size_t have = 0;
	int served = 0;

	for (;;) {
		struct pollfd p[2] = { { port_fd, POLLIN, 0 }, { 0, POLLIN, 0 } };
		ssize_t r;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 0;
		}
		if (p[1].revents) {
			r = read(0, junk, sizeof(junk));
			if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
				return 0;
		}
		if (!p[0].revents)
			continue;
		r = read(port_fd, line + have, sizeof(line) - 1 - have);
		if (r > 0) {
			served = 1;
			have = take_requests(line, have + r, sizeof(line), reclaim, quiesce_ms, port_fd);
			continue;
		}
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (served)
			return 0;
		sleep_ms(20);
	}
}

int main(int argc, char **argv)
{
	int reclaim = 0, shrink = 0, quiesce_ms = 0, opt, i;
	char line[128], why[400] = "";
	const char *port = NULL;
	size_t have = 0;
	FILE *pf;

	while ((opt = getopt(argc, argv, "rsq:w:o:p:")) != -1) {
		switch (opt) {
		case 'r': reclaim = 1; break;
		case 's': shrink = 1; break;
		case 'q': quiesce_ms = atoi(optarg); break;
		case 'w': pid_path = optarg; break;
		case 'o': ops_path = optarg; break;
		case 'p': port = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-r] [-s] [-q MS] [-w PIDFILE] [-o OPSFILE] [-p PORT] SECTION...\n", argv[0]);
			return 2;
		}
	}
	for (i = optind; i < argc && n_sections < MAX_SECTIONS; i++) {
		int s;

		for (s = 0; s <= S_OPS; s++)
			if (!strcmp(argv[i], names[s]))
				break;
		if (s > S_OPS) {
			fprintf(stderr, "kernlab-sampler: unknown section `%s`\n", argv[i]);
			return 2;
		}
		order[n_sections] = s;
		fds[n_sections] = paths[s] ? open(paths[s], O_RDONLY | O_CLOEXEC) : -1;
		if (paths[s] && fds[n_sections] < 0)
			fprintf(stderr, "kernlab-sampler: cannot open %s: %s\n", paths[s], strerror(errno));
		n_sections++;
	}
	if (reclaim)
		drop_fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (shrink)
		open_shrink();
	if (port)
		port_fd = open_port(port, why, sizeof(why));
	pf = fopen("/run/kernlab-sampler.pid", "w");
	if (pf) {
		fprintf(pf, "%d\n", (int)getpid());
		fclose(pf);
	}
	/*
	 * A first read of each file makes its seq_file buffer, which the
	 * kernel keeps with the descriptor: the first sample allocates no more
	 * than the later ones.
	 */
	for (i = 0; i < n_sections; i++)
		if (fds[i] >= 0 && order[i] != S_DENTRY)
			read_into(fds[i], 0);
	out_len = 0;
	{
		char ready[600];

		snprintf(ready, sizeof(ready), "@@kernlab-ready pid=%d shrink=%d transport=%s%s%s\n", (int)getpid(), n_shrink,
			 port_fd >= 0 ? "port" : "stdio", why[0] ? " port=" : "", why);
		if (write_all(1, ready, strlen(ready)) < 0)
			return 0;
	}
	if (port_fd >= 0)
		return serve_port(reclaim, quiesce_ms);
	/* Requests: `s SEQ\n`; anything else is ignored, EOF ends. */
	for (;;) {
		ssize_t r = read(0, line + have, sizeof(line) - 1 - have);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		have = take_requests(line, have + r, sizeof(line), reclaim, quiesce_ms, 1);
	}
}
