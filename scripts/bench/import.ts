// Import cost: the package entry point, as an app imports it.
import "bun-daemon";
