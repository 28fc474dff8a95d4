// Import cost: only bun-daemon's dependencies, to tell their share from its own.
import "citty";
import "consola/core";
