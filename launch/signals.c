#include "signals.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t first_signal;

// Async-signal-safe: a flag, or the default action of a second signal.
static void on_stop_signal(int sig) {
    if (first_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    first_signal = sig;
}

void stop_signals_install(void) {
    static const int sigs[] = {SIGTERM, SIGINT, SIGUSR1};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}

int stop_signal_received(void) { return first_signal; }

const char *stop_signal_name(int sig) {
    static char other[32];
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: snprintf(other, sizeof other, "signal %d", sig); return other;
    }
}
