/* libFuzzer target: the configuration loader (libconfig text in, errors out). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg_errors errs = { 0 };
	struct cfg *cfg = NULL;
	char path[64];
	int fd;

	if ((fd = memfd_create("fuzz-cfg", 0)) == -1)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (cfg_load(path, &cfg, &errs) == 0 && errs.n != 0)
		abort();
	cfg_free(cfg);
	cfg_errors_clear(&errs);
	close(fd);
	return 0;
}
