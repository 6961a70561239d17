/** The four permissions of the Identities web app (category "Identities") that the API checks. */
export const PERMISSIONS = ['Add Identity Files', 'Read Identity Files', 'Read Detections', 'Read All Identity'] as const;

export type Permission = (typeof PERMISSIONS)[number];

/** Short forms accepted on the command line and in JSON, e.g. `--user bob:pw:read-files,read-detections`. */
const SHORT_FORMS: Record<string, Permission> = {
  'add-files': 'Add Identity Files',
  'read-files': 'Read Identity Files',
  'read-detections': 'Read Detections',
  'read-identity': 'Read All Identity',
};

function normalise(text: string): string {
  return text.trim().toLowerCase().replace(/[\s_]+/g, '-');
}

const BY_KEY = new Map<string, Permission>();
for (const p of PERMISSIONS) BY_KEY.set(normalise(p), p);
for (const [short, p] of Object.entries(SHORT_FORMS)) BY_KEY.set(short, p);

/** The permission a name stands for (full name in any case, dashes or spaces, or a short form); undefined when unknown. */
export function parsePermission(text: string): Permission | undefined {
  return BY_KEY.get(normalise(text));
}

export const PERMISSION_SHORT_FORMS: Readonly<Record<string, Permission>> = SHORT_FORMS;
