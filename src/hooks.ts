/**
 * Where hooks are registered. Modules may call onInit() & co. before the
 * daemon object exists (at import): those wait here and the daemon adopts
 * them, in order, when it is defined.
 */
import type { Hook, HookName, ShutdownHook } from "./types.ts";

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

export function nextSeq(): number {
  return ++seq;
}

/** Make `owner` the daemon of this process and hand it what was registered before it existed. */
export function adopt(owner: HookOwner, into: Registration[]): void {
  current = owner;
  into.unshift(...pending.splice(0));
}

function register(event: HookName, fn: Hook<any>): () => void {
  if (typeof fn !== "function") throw new TypeError(`on${event[0]!.toUpperCase()}${event.slice(1)}() needs a function`);
  if (current) return current.add(event, fn);
  const reg: Registration = { event, fn, seq: nextSeq(), duringInit: false };
  pending.push(reg);
  return () => {
    const i = pending.indexOf(reg);
    if (i >= 0) pending.splice(i, 1);
  };
}

/** Run `fn` before the daemon is declared ready. Returns a function that unregisters it. */
export const onInit = (fn: Hook): (() => void) => register("init", fn);
/** Run `fn` once the daemon is ready (the launcher has been told). Returns an unregister function. */
export const onReady = (fn: Hook): (() => void) => register("ready", fn);
/** Run `fn` on SIGHUP or the `reload` command. Returns an unregister function. */
export const onReload = (fn: Hook): (() => void) => register("reload", fn);
/** Run `fn` on SIGTERM, SIGINT, `stop` or a fatal error, in reverse registration order. Returns an unregister function. */
export const onShutdown = (fn: ShutdownHook): (() => void) => register("shutdown", fn);
