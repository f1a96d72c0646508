/* Same behaviour as the e2e "nonewprivs" test image: installed setuid-root,
 * prints the effective uid. Built by test/images/build.sh. */
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("Effective uid: %d\n", (int)geteuid()); return 0; }
