package rebound

// EditPolicies returns an option that calls edit on every policy of the
// chain: the default policy (pattern "") and each host policy, those of
// WithHostPolicy and those a policy file gives, with its pattern as
// written. It runs after every other option, whatever the order they are
// given in, so a setting it makes reaches policies given later too (which
// a WithRetry, replacing the default policy's Retry only, does not):
//
//	opts, err := rebound.LoadPolicyFile(path)
//	...
//	opts = append(opts, rebound.EditPolicies(func(pattern string, p *rebound.Policy) {
//		p.Retry.Decide = myRule // on every host
//	}))
//
// Several EditPolicies run in the order given. The edited policies are
// checked as any other (New returns their errors) and are what PolicyFor
// reports. A nil edit is ignored.
func EditPolicies(edit func(pattern string, p *Policy)) Option {
	return func(o *options) {
		if edit != nil {
			o.edits = append(o.edits, edit)
		}
	}
}

// applyEdits runs the EditPolicies of o on its policies.
func (o *options) applyEdits() {
	for _, edit := range o.edits {
		edit("", &o.policy)
		for i := range o.hosts {
			edit(o.hosts[i].pattern, &o.hosts[i].policy)
		}
	}
}
