/**
 * Where hooks are registered. Modules may call onInit() & co. before the
 * daemon object exists (at import): those wait here and the daemon adopts
 * them, in order, when it is defined.
 */
import type { ArgsOf, ConfigOf, Hook, HookContext, HookName, ReloadContext, ShutdownContext, ShutdownHook } from "./types.ts";

export interface Registration {
  event: HookName;
  fn: Hook<any>;
  /** Global registration order: decides which shutdown hooks a failed init runs. */
  seq: number;
  /** Registered while init hooks were running: belongs to something that started. */
  duringInit: boolean;
}

export interface HookOwner {
  add(event: HookName, fn: Hook<any>): () => void;
}

let seq = 0;
let current: HookOwner | undefined;
const pending: Registration[] = [];
/**
 * The list each registration lives in now. An unregister function handed
 * out before defineDaemon() must still work after the daemon adopted the
 * registration into its own list.
 */
const homes = new WeakMap<Registration, Registration[]>();

/** Append a registration to `list`; returns the function that removes it from wherever it lives then. */
export function enlist(list: Registration[], event: HookName, fn: Hook<any>, duringInit: boolean): () => void {
  const reg: Registration = { event, fn, seq: ++seq, duringInit };
  list.push(reg);
  homes.set(reg, list);
  return () => {
    const home = homes.get(reg);
    const i = home ? home.indexOf(reg) : -1;
    if (i >= 0) home!.splice(i, 1);
  };
}

/** Make `owner` the daemon of this process and hand it what was registered before it existed. */
export function adopt(owner: HookOwner, into: Registration[]): void {
  current = owner;
  const moved = pending.splice(0);
  into.unshift(...moved);
  for (const reg of moved) homes.set(reg, into);
}

function register(event: HookName, fn: Hook<any>): () => void {
  if (typeof fn !== "function") throw new TypeError(`on${event[0]!.toUpperCase()}${event.slice(1)}() needs a function`);
  if (current) return current.add(event, fn);
  return enlist(pending, event, fn, false);
}

/*
 * Typing: with no type argument a hook's `ctx.args` knows only `_`; name the
 * daemon's type to get its options typed, as `daemon.on()` does:
 *
 *   import type { daemon } from "./main.ts";   // type-only: no import cycle at run time
 *   onInit<typeof daemon>((ctx) => listen(ctx.args.port));
 *
 * An ArgsDef type works as well: `onInit<typeof args>(...)`.
 */

/**
 * Run `fn` before the daemon is declared ready, in registration order. An
 * init hook registered while init runs (by another init hook) runs in the
 * same init, after the ones already registered; one unregistered before its
 * turn does not run. Returns a function that unregisters it.
 */
export const onInit = <D = {}>(fn: Hook<HookContext<ArgsOf<D>, ConfigOf<D>>>): (() => void) => register("init", fn);
/** Run `fn` once the daemon is ready (the launcher has been told). Returns an unregister function. */
export const onReady = <D = {}>(fn: Hook<HookContext<ArgsOf<D>, ConfigOf<D>>>): (() => void) => register("ready", fn);
/** Run `fn` on SIGHUP or the `reload` command. Returns an unregister function. */
export const onReload = <D = {}>(fn: Hook<ReloadContext<ArgsOf<D>, ConfigOf<D>>>): (() => void) => register("reload", fn);
/** Run `fn` on SIGTERM, SIGINT, `stop` or a fatal error, in reverse registration order. Returns an unregister function. */
export const onShutdown = <D = {}>(fn: ShutdownHook<ShutdownContext<ArgsOf<D>, ConfigOf<D>>>): (() => void) => register("shutdown", fn);
