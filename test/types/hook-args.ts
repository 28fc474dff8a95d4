/**
 * Type-level tests of what hooks see in `ctx.args` (issue 6, item 33).
 * Never run: `tsc --noEmit -p .` (the first step of `npm test`) checks this
 * file, and each `@ts-expect-error` fails the check if its line compiles.
 */
import type { ArgsDef } from "citty";
import { defineDaemon, onInit, onReady, onReload, onShutdown, type HookContext, type ShutdownContext } from "../../src/index.ts";

type Equal<X, Y> = (<T>() => T extends X ? 1 : 2) extends <T>() => T extends Y ? 1 : 2 ? true : false;
const same = <X, Y>(_check: Equal<X, Y>) => {};

export function typeChecks() {
  const daemon = defineDaemon({
    name: "typing",
    args: {
      port: { type: "string", default: "8080" },
      host: { type: "string" },
      token: { type: "string", required: true },
      verbose: { type: "boolean" },
      level: { type: "enum", options: ["low", "high"], default: "low" },
      "dry-run": { type: "boolean", alias: ["n", "N"] },
      host2: { type: "string", alias: "H" },
    },
  });

  const checkArgs = (ctx: HookContext<NonNullable<typeof daemon.config.args>>) => {
    same<typeof ctx.args.port, string>(true);
    same<typeof ctx.args.host, string | undefined>(true);
    same<typeof ctx.args.token, string>(true);
    same<typeof ctx.args.verbose, boolean | undefined>(true);
    same<typeof ctx.args.level, "low" | "high">(true);
    same<typeof ctx.args._, string[]>(true);
    // The keys the parser fills besides the name: camelCase and aliases.
    same<typeof ctx.args["dry-run"], boolean | undefined>(true);
    same<typeof ctx.args.dryRun, boolean | undefined>(true);
    same<typeof ctx.args.n, boolean | undefined>(true);
    same<typeof ctx.args.N, boolean | undefined>(true);
    same<typeof ctx.args.H, string | undefined>(true);
    // @ts-expect-error a misspelled option does not type-check
    void ctx.args.nosuch;
    // @ts-expect-error args are read-only
    ctx.args.port = "1";
  };

  // daemon.on() knows the daemon's args.
  daemon.on("init", (ctx) => {
    same<typeof ctx.args.port, string>(true);
    // @ts-expect-error misspelled
    void ctx.args.prot;
    checkArgs(ctx);
  });
  daemon.on("shutdown", (ctx) => {
    same<typeof ctx.reason, string>(true);
    same<typeof ctx.args.port, string>(true);
  });

  // Module-level hooks: name the daemon's type (an `import type` in a real module).
  onInit<typeof daemon>((ctx) => {
    same<typeof ctx.args.port, string>(true);
    same<typeof ctx.args.level, "low" | "high">(true);
    // @ts-expect-error misspelled
    void ctx.args.nosuch;
    checkArgs(ctx);
  });
  onReady<typeof daemon>((ctx) => same<typeof ctx.args.port, string>(true));
  onReload<typeof daemon>((ctx) => same<typeof ctx.args.verbose, boolean | undefined>(true));
  onShutdown<typeof daemon>((ctx: ShutdownContext<NonNullable<typeof daemon.config.args>>) => {
    same<typeof ctx.args.port, string>(true);
    // @ts-expect-error misspelled
    void ctx.args.nosuch;
  });

  // ...or an ArgsDef type.
  const args = { port: { type: "string", default: "8080" } } satisfies ArgsDef;
  onInit<typeof args>((ctx) => {
    same<typeof ctx.args.port, string>(true);
    // @ts-expect-error misspelled
    void ctx.args.nosuch;
  });

  // Without a type argument a hook knows no app option: reading one is an error, not `undefined`.
  onInit((ctx) => {
    same<typeof ctx.args._, string[]>(true);
    // @ts-expect-error the app's options are unknown here
    void ctx.args.port;
  });

  // A daemon without args: its hooks know none either.
  const bare = defineDaemon({ name: "bare" });
  bare.on("init", (ctx) => {
    // @ts-expect-error no such option
    void ctx.args.port;
  });
}
