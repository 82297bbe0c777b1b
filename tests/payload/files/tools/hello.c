#include <stdio.h>

int main(void)
{
	puts("payload-make-hello");
	return 0;
}
