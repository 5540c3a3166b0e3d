/**
 * Type-level test, checked by `tsc` with every build: the SDK's hand-written
 * model (`src/model.ts`) is identical to the bindings `jco guest-types`
 * generates from `wit/`, member by member, optional or not. When the WIT
 * changes and the model does not follow, this file stops compiling.
 */

import type * as Model from '../src/model.js';
import type * as Wit from 'sagahost:partner/types@0.1.0';

/** True only when `A` and `B` are the same type (not merely assignable both ways). */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** A deep structural comparison: `Same` on objects compares members recursively. */
type Deep<T> = T extends Uint8Array | Int32Array | Uint32Array | bigint | string | number | boolean
    ? T
    : T extends ReadonlyArray<infer E>
      ? Array<Deep<E>>
      : T extends object
        ? { [K in keyof T]: Deep<T[K]> }
        : T;

type Check<A, B> = Same<Deep<A>, Deep<B>>;

// `handle` takes an Event and returns a Plan: both sides of the contract, with
// every type they hold. "Type 'true' is not assignable to type 'false'" on one
// of these lines means src/model.ts no longer matches wit/types.wit.
export const eventMatchesWit: Check<Model.Event, Wit.Event> = true;
export const planMatchesWit: Check<Model.Plan, Wit.Plan> = true;
