import { derivedGuid, hash32 } from './seeded-random.ts';
import { isKnownGuid } from './guid.ts';
import type { SandboxData } from './sandbox-data.ts';

const FIRST = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Margaret', 'Niklaus', 'Radia', 'Tim'];
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'Thompson', 'Hamilton', 'Wirth', 'Perlman', 'Berners-Lee'];

/** How many people an unpinned tag carries. */
const PEOPLE_PER_GENERATED_TAG = 3;

export interface PersonRecord {
  personId: string;
  aliases: Array<Record<string, unknown>>;
  addresses: unknown[];
  entityFields: unknown[];
  tags: Array<{ tagId: string; name: string }>;
  notes: unknown[];
}

/**
 * People, tags and faces: pinned ones from the data file, every other GUID generated from
 * its hash. Ids starting with 00000000 do not exist.
 */
export class PeopleDirectory {
  /** Tag memberships of generated people, learnt when their tag was listed. */
  private readonly generatedTags = new Map<string, Set<string>>();

  constructor(private readonly data: SandboxData) {}

  person(personId: string): PersonRecord | undefined {
    const id = personId.toLowerCase();
    const pinned = this.data.people.get(id);
    if (pinned) {
      return {
        personId: pinned.personId,
        aliases: pinned.aliases ?? [],
        addresses: pinned.addresses ?? [],
        entityFields: pinned.entityFields ?? [],
        tags: (pinned.tags ?? []).map((t) => this.tag(t)),
        notes: pinned.notes ?? [],
      };
    }
    if (!isKnownGuid(id)) return undefined;
    const h = hash32(id);
    return {
      personId,
      aliases: [{ firstName: FIRST[h % FIRST.length], lastName: LAST[(h >>> 8) % LAST.length] }],
      addresses: [],
      entityFields: [],
      tags: [...(this.generatedTags.get(id) ?? [])].map((t) => this.tag(t)),
      notes: [],
    };
  }

  /** People carrying a tag: the pinned ones, or for an unpinned GUID tag a few generated people. */
  peopleWithTag(tagId: string): PersonRecord[] {
    const id = tagId.toLowerCase();
    const pinned = [...this.data.people.values()].filter((p) => (p.tags ?? []).some((t) => t.toLowerCase() === id));
    if (pinned.length > 0 || this.data.tags.has(id) || !isKnownGuid(id)) {
      return pinned.map((p) => this.person(p.personId)).filter((p): p is PersonRecord => p !== undefined);
    }
    const out: PersonRecord[] = [];
    for (let i = 0; i < PEOPLE_PER_GENERATED_TAG; i++) {
      const personId = derivedGuid(`tag/${id}/${i}`);
      let tags = this.generatedTags.get(personId);
      if (!tags) this.generatedTags.set(personId, (tags = new Set()));
      tags.add(id);
      out.push(this.person(personId)!);
    }
    return out;
  }

  /** Every pinned person (the answer to GET /people without a tagId). */
  pinnedPeople(): PersonRecord[] {
    return [...this.data.people.values()].map((p) => this.person(p.personId)!);
  }

  /** The faces of a person: pinned ones, else one face derived from the personId. */
  facesOf(personId: string): string[] {
    const id = personId.toLowerCase();
    const pinned = this.data.people.get(id)?.faceIds;
    if (pinned && pinned.length > 0) return pinned.map((f) => f.toLowerCase());
    const owned = [...this.data.faceOwner.entries()].filter(([, owner]) => owner === id).map(([face]) => face);
    if (owned.length > 0) return owned;
    return [derivedGuid(`face/${id}`)];
  }

  faceExists(faceId: string): boolean {
    const id = faceId.toLowerCase();
    return this.data.faceOwner.has(id) || this.data.enrollmentPhotos.has(id) || isKnownGuid(id);
  }

  private tag(tagId: string): { tagId: string; name: string } {
    const pinned = this.data.tags.get(tagId.toLowerCase());
    return { tagId, name: pinned?.name ?? `Tag ${tagId.slice(0, 8)}` };
  }
}
