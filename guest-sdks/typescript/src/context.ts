/**
 * Reading the message: the event's inbound message, its application
 * properties, and the Dataverse context's target entity and attributes.
 *
 * @module
 */

import type { Context, Entity, Event, Inbound, Value } from './model.js';

/** The message an event is about, whatever the event. */
export function inboundOf(event: Event): Inbound {
    return event.tag === 'message' ? event.val : event.val.inbound;
}

/** The `Target` entity of the context (e.g. the created contact), if it is one. */
export function target(context: Context): Entity | undefined {
    return context.target === undefined ? undefined : context.entities[context.target];
}

/** The value of attribute `name` of `entity`. */
export function attr(entity: Entity, name: string): Value | undefined {
    return entity.attributes.find((a) => a.name === name)?.value;
}

/** The value of attribute `name` when it is text (a string column, or a GUID). */
export function textAttr(entity: Entity, name: string): string | undefined {
    const value = attr(entity, name);
    return value?.tag === 'text' || value?.tag === 'guid' ? value.val : undefined;
}

/**
 * The application property `name` of the message (earlier steps add some with
 * {@link "plan".forward}'s `properties`).
 */
export function property(inbound: Inbound, name: string): string | undefined {
    return inbound.properties.find(([n]) => n === name)?.[1];
}
