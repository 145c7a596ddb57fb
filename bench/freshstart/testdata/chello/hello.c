// The C module of the freshstart benchmark when -c is not given.
#include <stdio.h>

int main(void) {
	printf("Content-Type: text/plain\n\nhello from c\n");
	return 0;
}
