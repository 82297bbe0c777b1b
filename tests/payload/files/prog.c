/* A stand-in for a product's user-space program: prints its argument and
 * the first line of its config, and fails without the config. */
#include <stdio.h>

int main(int argc, char **argv)
{
	char line[128] = "";
	FILE *f = fopen("/etc/app/app.conf", "r");

	if (!f || !fgets(line, sizeof(line), f)) {
		fprintf(stderr, "payload-prog: no /etc/app/app.conf\n");
		return 3;
	}
	fclose(f);
	printf("payload-prog %s %s", argc > 1 ? argv[1] : "-", line);
	return 0;
}
