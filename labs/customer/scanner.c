/*
 * scanner: a stand-in for the customer's user-space product, the daemon
 * that ran beside the hook module on the server that died. Every interval
 * it reads its configuration, walks the directories it names (opening and
 * reading each regular file, as an on-access scanner does), and reports
 * each pass to a collector over a fresh loopback TCP connection, so that it
 * too opens and closes files and sockets all the time through the hooked
 * close path. It never creates or deletes anything.
 *
 * usage: scanner -c CONFIG [-n PASSES]
 * CONFIG lines: `interval_ms N`, `scan DIR` (repeatable), `# comment`.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_DIRS 16

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

struct config {
	long interval_ms;
	int ndirs;
	char dirs[MAX_DIRS][256];
};

static int read_config(const char *path, struct config *c)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int lineno = 0;

	if (!f) {
		fprintf(stderr, "scanner: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	c->interval_ms = 1000;
	c->ndirs = 0;
	while (fgets(line, sizeof line, f)) {
		char key[32], val[256];
		lineno++;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "%31s %255s", key, val) != 2) {
			fprintf(stderr, "scanner: %s:%d: expected `key value`\n", path, lineno);
			fclose(f);
			return -1;
		}
		if (!strcmp(key, "interval_ms")) {
			c->interval_ms = atol(val);
		} else if (!strcmp(key, "scan") && c->ndirs < MAX_DIRS) {
			snprintf(c->dirs[c->ndirs++], sizeof c->dirs[0], "%s", val);
		} else {
			fprintf(stderr, "scanner: %s:%d: unknown key `%s`\n", path, lineno, key);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

static long scan_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[512], buf[4096];
	long files = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		struct stat st;
		int fd;

		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (lstat(path, &st) || !S_ISREG(st.st_mode))
			continue;
		fd = open(path, O_RDONLY | O_NONBLOCK);
		if (fd < 0)
			continue;
		if (read(fd, buf, sizeof buf) >= 0)
			files++;
		close(fd);
	}
	closedir(d);
	return files;
}

/* One report per pass: a loopback connection to our own listener. */
static void report(int listener, long pass, long files)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof a;
	char msg[64];
	int c, s;

	if (getsockname(listener, (struct sockaddr *)&a, &alen))
		return;
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0)
		return;
	if (connect(c, (struct sockaddr *)&a, alen) == 0) {
		s = accept(listener, NULL, NULL);
		snprintf(msg, sizeof msg, "pass %ld files %ld\n", pass, files);
		if (write(c, msg, strlen(msg)) < 0) { /* the collector is ourselves */ }
		if (s >= 0)
			close(s);
	}
	close(c);
}

int main(int argc, char **argv)
{
	const char *config = NULL;
	long passes = 0, pass;
	struct sockaddr_in a = { .sin_family = AF_INET };
	int opt, listener;

	while ((opt = getopt(argc, argv, "c:n:")) != -1) {
		if (opt == 'c')
			config = optarg;
		else if (opt == 'n')
			passes = atol(optarg);
		else
			return 2;
	}
	if (!config) {
		fprintf(stderr, "usage: scanner -c CONFIG [-n PASSES]\n");
		return 2;
	}
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listener = socket(AF_INET, SOCK_STREAM, 0);
	if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 4)) {
		perror("scanner: listen on loopback");
		return 1;
	}
	for (pass = 1; !stop && (!passes || pass <= passes); pass++) {
		struct config c;
		struct timespec ts;
		long files = 0;
		int i;

		if (read_config(config, &c))
			return 1;
		for (i = 0; i < c.ndirs; i++)
			files += scan_dir(c.dirs[i]);
		report(listener, pass, files);
		ts.tv_sec = c.interval_ms / 1000;
		ts.tv_nsec = (c.interval_ms % 1000) * 1000000L;
		nanosleep(&ts, NULL);
	}
	close(listener);
	return 0;
}
