# One plain GNU Makefile for the whole tree. Out-of-tree build into $(BUILD).
#
#   make            build the two service binaries (build/nanorec, build/trendstory)
#   make test       build and run every test binary and the fuzz corpora replays
#   make bench      run the benchmarks (long; not part of the tests)
#   make bench-llm  LLM prompt/generation speed and RSS against llama.cpp (long)
#   make fuzz       build the libFuzzer harnesses with clang-14 (build/fuzz-lf/)
#   make run        install what is missing, build, prepare defaults, start the services
#   make clean      remove $(BUILD)
#
# Options: SANITIZE=address,undefined  WERROR=0  DATA=../shared/data  BUILD=build

CC       ?= cc
BUILD    ?= build
DATA     ?= ../shared/data
WERROR   ?= 1
SANITIZE ?=

PKGS     := libmicrohttpd jansson libcurl expat hiredis openblas zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
ifeq ($(WERROR),1)
WARN     += -Werror
endif
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c17 -D_GNU_SOURCE -pthread -fno-strict-aliasing $(WARN) -Isrc $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lm -pthread
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=$(SANITIZE)
endif

# Library sources: every .c under src/ except the program entry points in src/apps/.
LIB_SRC  := $(sort $(wildcard src/base/*.c src/engine/*.c src/ann/*.c src/serve/*.c \
                              src/recsys/*.c src/story/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libnr.a
APPS     := $(BUILD)/nanorec $(BUILD)/trendstory
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_HELPERS := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_REPLAY := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_LF  := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz-lf/%)

.PHONY: all test check bench bench-ann bench-llm bench-serve bench-story bench-train fuzz run clean setup format
all: $(APPS)

# `make V=1` shows full command lines.
ifeq ($(V),1)
Q :=
else
Q := @
endif

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/%: $(BUILD)/obj/src/apps/%.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_HELPERS:%.c=$(BUILD)/obj/%.o) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $(filter %.o,$^) $(LIB) $(LDLIBS) $(CMOCKA_LIBS) -o $@

# Fuzz harnesses built with the normal compiler and a replay main, for `make test`.
$(BUILD)/fuzz/%: $(BUILD)/obj/fuzz/%.o $(BUILD)/obj/fuzz/replay_main.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $(filter %.o,$^) $(LIB) $(LDLIBS) -o $@

# libFuzzer builds: clang-14, sources compiled straight into the harness.
FUZZ_CC := clang-14
$(BUILD)/fuzz-lf/%: fuzz/%.c $(LIB_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c17 -D_GNU_SOURCE -pthread -O1 -g -Isrc $(PKG_CFLAGS) \
	  -fsanitize=fuzzer,address,undefined $< $(LIB_SRC) $(PKG_LIBS) -lm -o $@

# `make test` installs what is missing first, then builds and runs in a fresh make so that
# pkg-config sees the freshly installed libraries.
test:
	@scripts/setup.sh
	@$(MAKE) --no-print-directory check

# Vector-index seeds are generated (one small index of each kind), not committed.
$(BUILD)/fuzz-corpus/ann_index/.done: $(BUILD)/tests/test_ann
	@rm -rf $(dir $@) && mkdir -p $(dir $@)
	$(Q)$< --write-corpus $(dir $@) >/dev/null
	@touch $@

check: $(APPS) $(TESTS) $(FUZZ_REPLAY) $(BUILD)/fuzz-corpus/ann_index/.done
	@BUILD=$(BUILD) DATA=$(DATA) scripts/run_tests.sh $(TESTS) $(FUZZ_REPLAY)

fuzz: $(FUZZ_LF)
	@echo "libFuzzer harnesses in $(BUILD)/fuzz-lf/: run e.g. $(BUILD)/fuzz-lf/fuzz_gguf fuzz/corpus/gguf -max_total_time=60"

bench: $(APPS)
	@BUILD=$(BUILD) DATA=$(DATA) scripts/bench.sh

# Benchmark programs: bench/<name>.c linked with the library.
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# Vector search against FAISS (docs/BENCHMARKS.md); SET=27k (default) or SET=3m.
bench-ann: $(BUILD)/bench/bench_ann
	@BUILD=$(BUILD) DATA=$(DATA) scripts/bench_ann.sh $(SET)

# nanorec POST /recommend under load (wrk + Lua mix; docs/BENCHMARKS.md). DURATION=30 per run.
bench-serve: $(APPS) $(BUILD)/bench/rec_synth
	@BUILD=$(BUILD) DATA=$(DATA) scripts/bench_serve.sh

# trendstory load scenarios (locust; about 40 minutes; see docs/BENCHMARKS.md)
bench-story: $(APPS)
	@BUILD=$(BUILD) DATA=$(DATA) scripts/bench_story.sh

# trendstory generate vs llama.cpp (node-llama-cpp) on random TinyLlama-shaped models.
bench-llm: $(BUILD)/trendstory
	@BUILD=$(BUILD) scripts/bench_llm.sh

# nanorec encoder training on ML-1M for 30 minutes, then the full test (docs/BENCHMARKS.md).
bench-train: $(APPS)
	@BUILD=$(BUILD) DATA=$(DATA) scripts/bench_train.sh

run: 
	@scripts/setup.sh
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) DATA=$(DATA) scripts/run.sh

setup:
	@scripts/setup.sh

format:
	clang-format -i $(LIB_SRC) $(wildcard src/*/*.h src/apps/*.c tests/*.c tests/*.h fuzz/*.c)

clean:
	rm -rf $(BUILD)

.SECONDARY:
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
