// js_on_load of the app's gr.HTML views (element, trigger, watch are Gradio's).
// * a click (or Enter) on an element with data-pick sends a `select` event with that value; buttons
//   are disabled at once so a choice or a cancel is sent once;
// * <time datetime> elements show the reader's local time;
// * the customer's chat scrolls to its newest message;
// * the agents' inbox ([data-waiting]) puts the waiting count in the tab title and chimes (and
//   counts window.chatbotChimes) when it grows.
const pick = (event) => {
  const target = event.target.closest('[data-pick]');
  if (!target || target.disabled) return;
  if (target.tagName === 'BUTTON') element.querySelectorAll('button[data-pick]').forEach((b) => { b.disabled = true; });
  trigger('select', {index: Number(target.dataset.index || 0), value: target.dataset.pick});
};
element.addEventListener('click', pick);
element.addEventListener('keydown', (event) => { if (event.key === 'Enter') pick(event); });

let waitingBefore = null;
const baseTitle = document.title.replace(/^\(\d+\) /, '');
const chime = () => {
  window.chatbotChimes = (window.chatbotChimes || 0) + 1;
  try {
    const audio = new (window.AudioContext || window.webkitAudioContext)();
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = 880;
    gain.gain.setValueAtTime(0.08, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
    tone.connect(gain);
    gain.connect(audio.destination);
    tone.start();
    tone.stop(audio.currentTime + 0.4);
  } catch (err) { /* no sound here: the badge still shows */ }
};
const rendered = () => {
  element.querySelectorAll('time[datetime]').forEach((t) => {
    const moment = new Date(t.getAttribute('datetime'));
    if (!isNaN(moment)) t.textContent = moment.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
  });
  const chat = element.querySelector('.cb-chat');
  if (chat) {
    const bottom = () => { chat.scrollTop = chat.scrollHeight; };
    bottom();
    requestAnimationFrame(bottom);
    setTimeout(bottom, 150);
  }
  const inbox = element.querySelector('[data-waiting]');
  if (inbox) {
    const waiting = Number(inbox.dataset.waiting);
    document.title = (waiting ? `(${waiting}) ` : '') + baseTitle;
    if (waitingBefore !== null && waiting > waitingBefore) {
      chime();
      inbox.classList.add('ib-flash');
    }
    waitingBefore = waiting;
  }
};
rendered();
watch('value', rendered);
